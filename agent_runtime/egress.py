"""The sandbox's doors to the world: a forward proxy on 127.0.0.1:3128 and the services on 127.0.0.1:7070.

Both are dumb on purpose. Each accepted connection is carried as it is over the runtime socket, after one line that
names the door and the sandbox and carries its token; the controller reads the HTTP, decides, adds credentials,
and answers. Nothing here decides anything, holds a secret, or can be talked into reaching anywhere else: the
sandbox has no network but loopback, and the runtime socket leads only to the controller.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any, Dict, List, Tuple

PROXY = ("127.0.0.1", 3128)
SERVICES = ("127.0.0.1", 7070)
MAGIC = b"FLEETGATE-EGRESS/1 "
CHUNK = 256 * 1024


def environment(proxy_port: int = PROXY[1]) -> Dict[str, str]:
    """What every command of the sandbox gets, so well-behaved clients use the proxy."""
    url = "http://127.0.0.1:%d" % proxy_port
    env = {"NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = url
    return env


class Relay:
    """Listens on one loopback address and carries each connection to the controller's egress door.

    Bound first, served later: the supervisor binds both doors before anything else it does (a connection made
    before it serves waits in the listen queue, it is not refused), and serves them once it has its credentials."""

    def __init__(self, door: str, address: Tuple[str, int]) -> None:
        self.door = door
        self._creds: Dict[str, Any] = {}
        self._socket_path = ""
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(address)
        self._listener.listen(256)
        self.address = self._listener.getsockname()

    def preamble(self) -> bytes:
        line = "%s%s %s\r\nAuthorization: Bearer %s\r\n\r\n" % (
            MAGIC.decode(),
            self.door,
            self._creds["sandbox_id"],
            self._creds["token"],
        )
        return line.encode("latin-1")

    def serve(self, creds: Dict[str, Any], stop: threading.Event) -> None:
        self._creds = creds
        self._socket_path = creds.get("socket", "/run/fleetgate/runtime.sock")
        while not stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                if stop.is_set():
                    return
                continue
            try:
                threading.Thread(target=self._carry, args=(client,), name="fleetgate-egress", daemon=True).start()
            except RuntimeError:  # the sandbox is out of pids: this connection is refused, the door stays open
                _refuse(client, "the sandbox has no thread left to carry this connection (pids limit)")

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass

    def _carry(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.connect(self._socket_path)
            upstream.sendall(self.preamble())
        except OSError as e:
            _refuse(client, "the controller cannot be reached from this sandbox: %s" % e)
            upstream.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        _linger(client)
        client.close()
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until the source ends, then say so to the sink (a half close: the answer may still be coming)."""
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _linger(client: socket.socket, limit_s: float = 1.0, limit_bytes: int = 1 << 20) -> None:
    """Read what the client is still sending before closing: closing a socket with unread data resets the
    connection, and the client may then lose the answer it was about to read (a refusal of a request that was too
    large, say)."""
    try:
        client.settimeout(limit_s)
        while limit_bytes > 0:
            data = client.recv(CHUNK)
            if not data:
                return
            limit_bytes -= len(data)
    except OSError:
        pass


def _refuse(client: socket.socket, message: str) -> None:
    body = ('{"detail": "%s"}' % message.replace('"', "'")).encode()
    head = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    try:
        client.sendall(head.encode() + b"connection: close\r\n\r\n" + body)
    except OSError:
        pass
    client.close()


def bind(proxy: Tuple[str, int] = PROXY, services: Tuple[str, int] = SERVICES) -> List[Relay]:
    """Open both doors' sockets; a port already taken is reported and skipped."""
    relays = []
    for door, address in (("proxy", proxy), ("service", services)):
        try:
            relays.append(Relay(door, address))
        except OSError as e:
            sys.stderr.write("fleetgate: the %s door cannot listen on %s:%d: %s\n" % (door, address[0], address[1], e))
    return relays


def serve(relays: List[Relay], creds: Dict[str, Any], stop: threading.Event) -> None:
    for relay in relays:
        name = "fleetgate-%s" % relay.door
        threading.Thread(target=relay.serve, args=(creds, stop), name=name, daemon=True).start()


def start(
    creds: Dict[str, Any],
    stop: threading.Event,
    proxy: Tuple[str, int] = PROXY,
    services: Tuple[str, int] = SERVICES,
) -> List[Relay]:
    """Bind and serve both doors at once."""
    relays = bind(proxy, services)
    serve(relays, creds, stop)
    return relays
