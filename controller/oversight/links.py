"""Signed, single-use, expiring approve/deny links, so an approver can decide from a phone.

A link carries (approval, decision, user, expiry, id) and an HMAC-SHA256 over them with a key that never leaves
the controller's home. Opening it shows what is being decided; only the button (a POST) decides, so a chat
app's link preview cannot approve anything. Each link's id is recorded when used: it works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from controller.errors import Forbidden, Invalid

DEFAULT_TTL_S = 3600


def link_key(home: Path) -> bytes:
    path = home / "keys" / "links.key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkClaims:
    approval_id: int
    decision: str
    user: str
    expires: int
    jti: str


def sign(key: bytes, *, approval_id: int, decision: str, user: str, ttl_s: int = DEFAULT_TTL_S) -> str:
    claims = {"a": approval_id, "d": decision, "u": user, "e": int(time.time()) + ttl_s, "j": secrets.token_hex(12)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify(key: bytes, token: str) -> LinkClaims:
    """The link's claims, or Invalid/Forbidden saying why it cannot be used."""
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, expected):
        raise Forbidden("this link is not valid (it was changed, or made by another fleetgate)")
    try:
        claims = json.loads(_unb64(body))
        parsed = LinkClaims(int(claims["a"]), str(claims["d"]), str(claims["u"]), int(claims["e"]), str(claims["j"]))
    except (ValueError, KeyError, TypeError) as e:
        raise Invalid("this link is malformed") from e
    if parsed.decision not in ("approve", "deny"):
        raise Invalid("this link is malformed")
    if parsed.expires < time.time():
        raise Forbidden("this link has expired; open the approval in the console or ask for a new link")
    return parsed
