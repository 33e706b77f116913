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
    """Listens on one loopback address and carries each connection to the controller's egress door."""

    def __init__(self, door: str, address: Tuple[str, int], creds: Dict[str, Any]) -> None:
        self.door = door
        self._creds = creds
        self._socket_path = creds.get("socket", "/run/fleetgate/runtime.sock")
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

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                if stop.is_set():
                    return
                continue
            threading.Thread(target=self._carry, args=(client,), name="fleetgate-egress", daemon=True).start()

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


def _refuse(client: socket.socket, message: str) -> None:
    body = ('{"detail": "%s"}' % message.replace('"', "'")).encode()
    head = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    try:
        client.sendall(head.encode() + b"connection: close\r\n\r\n" + body)
    except OSError:
        pass
    client.close()


def start(
    creds: Dict[str, Any],
    stop: threading.Event,
    proxy: Tuple[str, int] = PROXY,
    services: Tuple[str, int] = SERVICES,
) -> List[Relay]:
    """Open both doors; a port already taken is reported and skipped (the agent's command may have bound it)."""
    relays = []
    for door, address in (("proxy", proxy), ("service", services)):
        try:
            relay = Relay(door, address, creds)
        except OSError as e:
            sys.stderr.write("fleetgate: the %s door cannot listen on %s:%d: %s\n" % (door, address[0], address[1], e))
            continue
        threading.Thread(target=relay.serve, args=(stop,), name="fleetgate-%s" % door, daemon=True).start()
        relays.append(relay)
    return relays
