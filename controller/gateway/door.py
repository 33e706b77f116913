"""One socket, two kinds of caller: the runtime's HTTP requests, and the egress door's byte streams.

Everything a sandbox sends reaches the controller through `/run/fleetgate/runtime.sock`. Most connections carry
the runtime's HTTP requests (the gateway app, served by uvicorn); a connection that opens with `FLEETGATE-EGRESS/1`
carries one proxied connection or service call of the sandbox's (`gateway/egress.py`) and needs the raw bytes,
which ASGI cannot give. `RuntimeDoor` is the protocol uvicorn makes for each connection: it reads the first bytes
and hands the connection either to uvicorn's own HTTP protocol, unchanged from then on, or to the egress door.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAGIC = b"FLEETGATE-EGRESS/1 "
STREAM_LIMIT = 1 << 20

EgressHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


class RuntimeDoor(asyncio.Protocol):
    """uvicorn's `http` protocol class for the runtime socket (see `door_for`)."""

    egress: ClassVar[EgressHandler]

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: asyncio.AbstractEventLoop | None = None):
        self._args = {"config": config, "server_state": server_state, "app_state": app_state, "_loop": _loop}
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: Any = None  # an asyncio.Transport, or uvloop's, which is one without the base class
        self._first = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._first += data
        if len(self._first) < len(MAGIC) and MAGIC.startswith(self._first):
            return  # not enough to tell yet
        if self._first.startswith(MAGIC):
            self._to_egress()
        else:
            self._to_http()

    def eof_received(self) -> bool | None:
        if self._transport is not None:
            self._transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _to_http(self) -> None:
        transport = self._transport
        assert transport is not None
        inner = HttpToolsProtocol(**self._args)
        transport.set_protocol(inner)
        inner.connection_made(transport)
        inner.data_received(self._first)

    def _to_egress(self) -> None:
        transport = self._transport
        assert transport is not None
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self._first)
        writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        self._loop.create_task(type(self).egress(reader, writer))


def door_for(egress: EgressHandler) -> type[RuntimeDoor]:
    """The protocol class to give uvicorn (`Config(http=...)`), with its egress handler."""
    return type("RuntimeDoorWithEgress", (RuntimeDoor,), {"egress": staticmethod(egress)})
