"""`http.request` {method, url, headers?, body?, timeout_s?}: an HTTP call made by the controller for an agent.

A header value may hold `{{secret:NAME}}`; the stored secret NAME takes its place only in the request that goes
out, so the action row, the audit log and the events keep the placeholder. What comes back has every secret that
was used replaced by its placeholder again (headers and body), so a server that echoes a request cannot hand the
secret to the agent. That redaction catches the secret as sent and in its common encodings, not a server that
transforms it on purpose: whoever allows a request that carries a secret decides that its destination may have it
(a policy that auto-allows `http.request` should pin the host).

The destination passes the destination guard (`oversight/destinations.py`): the controller resolves the name, every
address must be public or allow-listed (FLEETGATE_EGRESS_ALLOW), and the connection goes to the address checked,
with the name as the Host header and as the TLS server name (the certificate is verified for the name). Redirects
are returned, not followed: the next hop is another request, checked and decided on its own.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from controller.errors import Invalid, Unavailable
from controller.oversight.brokers.context import BrokerContext
from controller.oversight.destinations import Allowlist, resolve_destination

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ARGS = frozenset({"method", "url", "headers", "body", "timeout_s"})
PLACEHOLDER = re.compile(r"\{\{secret:([^{}]*)\}\}")
SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
# Headers that frame or route the request are the controller's to set (Host names the checked destination).
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"}
)
MAX_URL = 8192
MAX_RESPONSE_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class HttpCall:
    """A checked request, secrets still as placeholders."""

    method: str
    url: httpx.URL
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout_s: float

    @property
    def host(self) -> str:
        """The name as it goes on the wire (IDNA-encoded), without brackets for an IPv6 address."""
        return self.url.raw_host.decode("ascii")

    @property
    def port(self) -> int:
        return self.url.port or (443 if self.url.scheme == "https" else 80)


def http_request(ctx: BrokerContext, args: dict[str, Any]) -> dict[str, Any]:
    """Make the call to the checked address and return {status, headers (names in lower case), body} with secrets
    redacted; a body that is not UTF-8 comes as body_base64, one over 1 MiB is cut with truncated: true."""
    call = parse_call(args)
    used = {name: ctx.secret(name) for name in secret_names(call)}
    addresses = resolve_destination(call.host, call.port, Allowlist.parse(ctx.settings.egress_allow))
    try:
        return redacted(_send(call, fill_secrets(call.headers, used), addresses), used)
    except httpx.HTTPError as e:
        raise Unavailable(redact_text(f"{call.method} {call.host}:{call.port} failed: {e}", used)) from None


def parse_call(args: dict[str, Any]) -> HttpCall:
    """The request the arguments describe, or Invalid saying which argument is wrong and how."""
    unknown = sorted(set(args) - ARGS)
    if unknown:
        raise Invalid(f"http.request does not take {', '.join(map(repr, unknown))}; it takes {', '.join(sorted(ARGS))}")
    method = args.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise Invalid(f"http.request needs 'method', one of {', '.join(sorted(METHODS))}; got {str(method)[:40]!r}")
    body = args.get("body")
    if body is not None and not isinstance(body, str):
        raise Invalid("http.request 'body' must be a string (send JSON as its text)")
    timeout = args.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise Invalid(f"http.request 'timeout_s' must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    return HttpCall(
        method=method.upper(),
        url=_url(args.get("url")),
        headers=_headers(args.get("headers", {})),
        body=None if body is None else body.encode(),
        timeout_s=float(timeout),
    )


def _url(value: Any) -> httpx.URL:
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise Invalid(f"http.request needs 'url', an http:// or https:// URL of at most {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid("http.request 'url' must not contain spaces or control characters (percent-encode them)")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as e:
        raise Invalid(f"http.request 'url' is not a valid URL: {e}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise Invalid("http.request 'url' must be an absolute http:// or https:// URL with a host")
    if url.userinfo:
        raise Invalid("http.request 'url' must not carry a user or password; send credentials in a header")
    if PLACEHOLDER.search(value):
        raise Invalid("{{secret:...}} works in header values only, not in the URL")
    return url


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise Invalid('http.request \'headers\' must be an object of names to string values, e.g. {"Accept": "..."}')
    headers = []
    for name, text in value.items():
        if not HEADER_NAME.match(name):
            raise Invalid(f"header {name[:80]!r} is not a valid HTTP header name (letters, digits, !#$%&'*+-.^_`|~)")
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("proxy-"):
            raise Invalid(f"header {name!r} frames or routes the request; the controller sets it")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise Invalid(f"header {name!r} must have a string value without line breaks or NUL")
        for secret in PLACEHOLDER.findall(text):
            if not SECRET_NAME.match(secret):
                raise Invalid(f"header {name!r}: {{{{secret:{secret[:80]}}}}} does not name a secret")
        headers.append((name, text))
    return tuple(headers)


def secret_names(call: HttpCall) -> list[str]:
    """The secrets the request's headers name, each once, in order."""
    return list(dict.fromkeys(name for _, text in call.headers for name in PLACEHOLDER.findall(text)))


def fill_secrets(headers: tuple[tuple[str, str], ...], secrets: dict[str, str]) -> list[tuple[str, str]]:
    """The headers with every placeholder replaced by its secret, for the request on the wire only."""
    filled = [(name, PLACEHOLDER.sub(lambda m: secrets[m.group(1)], text)) for name, text in headers]
    for name, text in filled:
        if any(c in text for c in "\r\n\0"):
            raise Invalid(f"header {name!r}: a secret it names holds a line break, which a header cannot carry")
    return filled


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # at most MAX_RESPONSE_BYTES and one byte more (to tell that there was more)


def _send(call: HttpCall, headers: list[tuple[str, str]], addresses: list[str]) -> Reply:
    """Send to the first checked address that answers, as if to the name (Host header, TLS server name)."""
    headers = [("Host", call.url.netloc.decode("ascii")), *headers]
    extensions = {"sni_hostname": call.host} if call.url.scheme == "https" else {}
    failure: httpx.HTTPError | None = None
    with httpx.Client(timeout=call.timeout_s, follow_redirects=False, trust_env=False) as client:
        for address in addresses:
            target = call.url.copy_with(host=address)
            try:
                with client.stream(
                    call.method, target, headers=headers, content=call.body, extensions=extensions
                ) as response:
                    return Reply(response.status_code, list(response.headers.multi_items()), _read_capped(response))
            except httpx.ConnectError as e:
                failure = e
    assert failure is not None
    raise failure


def _read_capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[: MAX_RESPONSE_BYTES + 1]


def redacted(reply: Reply, secrets: dict[str, str]) -> dict[str, Any]:
    """The response as the agent sees it: every secret used replaced by its placeholder."""
    body = reply.body
    truncated = len(body) > MAX_RESPONSE_BYTES
    if truncated:  # a secret cut in two at the end would escape redaction: its first part goes too
        body = _without_partial_secret(body[:MAX_RESPONSE_BYTES], secrets)
    body = redact_bytes(body, secrets)
    headers: dict[str, str] = {}
    for name, value in reply.headers:
        shown = redact_text(value, secrets)
        headers[name] = f"{headers[name]}, {shown}" if name in headers else shown
    result: dict[str, Any] = {"status": reply.status, "headers": headers}
    try:
        result["body"] = body.decode()
    except UnicodeDecodeError:
        result["body_base64"] = base64.b64encode(body).decode()
    if truncated:
        result["truncated"] = True
    return result


def _forms(value: str) -> list[bytes]:
    """A secret as it may come back: verbatim, percent-encoded, JSON-escaped, base64."""
    forms = {value.encode(), quote(value, safe="").encode(), json.dumps(value)[1:-1].encode()}
    encoded = base64.b64encode(value.encode())
    forms |= {encoded, encoded.rstrip(b"=")}
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact_bytes(data: bytes, secrets: dict[str, str]) -> bytes:
    for name, value in secrets.items():
        for form in _forms(value):
            data = data.replace(form, f"{{{{secret:{name}}}}}".encode())
    return data


def redact_text(text: str, secrets: dict[str, str]) -> str:
    return redact_bytes(text.encode(), secrets).decode(errors="replace")


def _without_partial_secret(data: bytes, secrets: dict[str, str]) -> bytes:
    for value in secrets.values():
        for form in _forms(value):
            for size in range(len(form) - 1, 0, -1):
                if data.endswith(form[:size]):
                    data = data[:-size]
                    break
    return data
