"""Talking to the runtime gateway: JSON over HTTP/1.1 on the unix socket, with the sandbox's own token.

The HTTP is written by hand rather than with http.client, which imports the email package and ssl: about 110 ms of
every sandbox's start under gVisor, before the supervisor can open the sandbox's doors. The other side is always
the controller's gateway, so a small client that speaks exactly its HTTP/1.1 (Content-Length or chunked bodies,
kept-alive connections) is enough.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Dict, Optional, Tuple

SOCKET = "/run/fleetgate/runtime.sock"
CREDENTIALS = "/run/fleetgate/sandbox/sandbox.json"


class GatewayError(Exception):
    """The gateway answered with an error, or could not be reached in time."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(Exception):
    """The gateway's answer was not the HTTP it should be."""


class _Wire:
    """One kept-alive HTTP/1.1 connection to the gateway's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.file = sock.makefile("rb")
        self.closed = False

    def request(self, method: str, path: str, headers: Dict[str, str], payload: Optional[bytes]) -> Tuple[int, bytes]:
        body = payload or b""
        head = "%s %s HTTP/1.1\r\nHost: fleetgate\r\n" % (method, path)
        head += "".join("%s: %s\r\n" % item for item in headers.items())
        head += "Content-Length: %d\r\n\r\n" % len(body)
        self.sock.sendall(head.encode("latin-1") + body)
        status_line = self.file.readline(_LINE)
        if not status_line:
            raise ProtocolError("the gateway closed the connection")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ProtocolError("not an HTTP answer: %r" % status_line[:80])
        status, length, chunked = int(parts[1]), -1, False
        while True:
            line = self.file.readline(_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection" and value.lower() == b"close":
                self.closed = True
        if chunked:
            return status, self._chunks()
        if length >= 0:
            data = self.file.read(length)
            if len(data) != length:
                raise ProtocolError("the gateway's answer ended early")
            return status, data
        if status in (204, 304):
            return status, b""
        self.closed = True
        return status, self.file.read()

    def _chunks(self) -> bytes:
        data = b""
        while True:
            size = int(self.file.readline(_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.file.readline(_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return data
            data += self.file.read(size)
            self.file.readline(_LINE)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


_LINE = 65537


def load_credentials(path: str = CREDENTIALS) -> Optional[Dict[str, Any]]:
    """The sandbox's identity and token, or None while it has none yet (a pooled sandbox before its claim)."""
    try:
        with open(path) as handle:
            return json.load(handle)  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


class Gateway:
    """A client of one sandbox's runtime routes; reconnects by itself, as the controller may restart."""

    def __init__(self, sandbox_id: str, token: str, socket_path: str = SOCKET, timeout: float = 30.0) -> None:
        self.sandbox_id = sandbox_id
        self._token = token
        self._socket_path = socket_path
        self._timeout = timeout
        self._conn: Optional[_Wire] = None

    @classmethod
    def from_environment(cls) -> "Gateway":
        """The gateway client of the sandbox this process runs in."""
        creds = load_credentials(os.environ.get("FLEETGATE_CREDENTIALS", CREDENTIALS))
        if creds is None:
            raise GatewayError("this sandbox has no credentials yet; is it running under fleetgate?")
        return cls(creds["sandbox_id"], creds["token"], creds.get("socket", SOCKET))

    def call(self, method: str, route: str, body: Optional[Dict[str, Any]] = None, retry_for: float = 30.0) -> Any:
        """One request to `/runtime/v1/sandboxes/<id><route>`; retries connection failures for `retry_for` s."""
        path = "/runtime/v1/sandboxes/" + self.sandbox_id + route
        payload = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + retry_for
        delay = 0.05
        while True:
            try:
                return self._once(method, path, payload)
            except (OSError, ValueError, ProtocolError) as e:
                self.close()
                if time.monotonic() + delay > deadline:
                    raise GatewayError("runtime gateway unreachable: %s" % e) from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _once(self, method: str, path: str, payload: Optional[bytes]) -> Any:
        if self._conn is None:
            self._conn = _Wire(self._socket_path, self._timeout)
        headers = {"Authorization": "Bearer " + self._token, "Content-Type": "application/json"}
        status, data = self._conn.request(method, path, headers, payload)
        if self._conn.closed:
            self.close()
        if status >= 400:
            try:
                detail = json.loads(data).get("detail", data.decode(errors="replace"))
            except ValueError:
                detail = data.decode(errors="replace")
            raise GatewayError(str(detail), status)
        if not data:
            return None
        return json.loads(data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
