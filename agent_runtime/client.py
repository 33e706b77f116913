"""Talking to the runtime gateway: JSON over HTTP/1.1 on the unix socket, with the sandbox's own token."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from typing import Any, Dict, Optional

SOCKET = "/run/fleetgate/runtime.sock"
CREDENTIALS = "/run/fleetgate/sandbox/sandbox.json"


class GatewayError(Exception):
    """The gateway answered with an error, or could not be reached in time."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("fleetgate", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


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
        self._conn: Optional[_UnixConnection] = None

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
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if time.monotonic() + delay > deadline:
                    raise GatewayError("runtime gateway unreachable: %s" % e) from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _once(self, method: str, path: str, payload: Optional[bytes]) -> Any:
        if self._conn is None:
            self._conn = _UnixConnection(self._socket_path, self._timeout)
        headers = {"Authorization": "Bearer " + self._token, "Content-Type": "application/json"}
        self._conn.request(method, path, body=payload, headers=headers)
        response = self._conn.getresponse()
        data = response.read()
        if response.status >= 400:
            try:
                detail = json.loads(data).get("detail", data.decode(errors="replace"))
            except ValueError:
                detail = data.decode(errors="replace")
            raise GatewayError(str(detail), response.status)
        if not data:
            return None
        return json.loads(data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
