"""The egress door's side towards the world: HTTP/1.1 with h11 over asyncio streams, connections kept alive.

The door already speaks h11 to the sandbox; speaking it upstream too passes bytes through with one parse each way.
httpx did the same work at about twice the CPU per request, and on two cores the controller's CPU per call is its
latency. A connection goes back to the pool only when both sides finished the exchange cleanly.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from controller.gateway.http1 import READ

IDLE_S = 30.0
MAX_IDLE_PER_ORIGIN = 16
CONNECT_S = 10.0
READ_S = 600.0


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange."""


@dataclass
class Target:
    """Where a request goes: the address to connect to, and the names it carries (Host, TLS server name)."""

    scheme: str
    host: str  # what to connect to (a name, or the address the guard checked)
    port: int
    authority: str  # the Host header
    target: bytes  # path and query
    server_name: str | None = None

    @classmethod
    def of(cls, url: str, *, connect_to: str | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"cannot reach {url[:200]!r}: only http:// and https:// upstreams")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            scheme=parts.scheme,
            host=connect_to or parts.hostname,
            port=port,
            authority=parts.netloc.rpartition("@")[2],
            target=path.encode("latin-1"),
            server_name=parts.hostname if parts.scheme == "https" else None,
        )

    @property
    def origin(self) -> tuple[str, str, int, str | None]:
        return (self.scheme, self.host, self.port, self.server_name)


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]


class Upstreams:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int, str | None], list[_Conn]] = {}
        self._tls = ssl.create_default_context()

    async def exchange(
        self, method: str, target: Target, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[Answer, _Conn]:
        """Send one request and read the answer's head; stream its body with `Answer.body`, then `release`."""
        for attempt in (0, 1):
            conn, reused = await self._checkout(target)
            try:
                events = conn.h11.send(
                    h11.Request(
                        method=method.encode("latin-1"),
                        target=target.target,
                        headers=[(b"host", target.authority.encode("latin-1")), *headers,
                                 (b"content-length", str(len(body)).encode())],
                    )
                )  # fmt: skip
                data = events or b""
                if body:
                    data += conn.h11.send(h11.Data(data=body)) or b""
                conn.writer.write(data + (conn.h11.send(h11.EndOfMessage()) or b""))
                await conn.writer.drain()
                head = await self._next(conn)
                while isinstance(head, h11.InformationalResponse):
                    head = await self._next(conn)
                if not isinstance(head, h11.Response):
                    raise UpstreamError("the upstream closed the connection without answering")
            except (UpstreamError, OSError, h11.ProtocolError) as e:
                conn.writer.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the upstream had closed meanwhile: once more on a new one
                raise UpstreamError(str(e) or type(e).__name__) from e
            return Answer(head.status_code, list(head.headers), self._body(conn)), conn
        raise AssertionError("unreachable")

    async def _body(self, conn: _Conn) -> AsyncIterator[bytes]:
        while True:
            try:
                event = await self._next(conn)
            except (OSError, h11.ProtocolError) as e:
                raise UpstreamError(str(e) or type(e).__name__) from e
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise UpstreamError("the upstream closed the connection in the middle of its answer")

    async def _next(self, conn: _Conn) -> h11.Event:
        while True:
            event = conn.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await asyncio.wait_for(conn.reader.read(READ), READ_S)
            conn.h11.receive_data(data)

    def release(self, target: Target, conn: _Conn) -> None:
        """Keep the connection for the next request to the same place, if its exchange ended cleanly."""
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(target.origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.writer.close()

    async def _checkout(self, target: Target) -> tuple[_Conn, bool]:
        idle = self._idle.get(target.origin, [])
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.writer.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=self._tls if target.scheme == "https" else None,
                    server_hostname=target.server_name,
                    limit=READ,
                ),
                CONNECT_S,
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise UpstreamError(f"{target.authority}: {e or type(e).__name__}") from e
        return _Conn(reader, writer), False

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.writer.close()
        self._idle.clear()
