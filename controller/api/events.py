"""Server-Sent Events from the Redis Streams: the live fleet, or one sandbox.

The SSE id is the stream id. A client that reconnects with `Last-Event-ID` resumes right after it; if that id
was trimmed from the stream, the gap is filled from the database first. A client that stops reading is never
allowed to hold anything up: reads from Redis happen only as fast as it takes them, and a send that cannot
complete in `SEND_TIMEOUT_S` drops the connection (the client reconnects with its Last-Event-ID and loses nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from controller.api.deps import FleetDep, Viewer
from controller.errors import Invalid
from controller.fleet import Fleet
from controller.models import SANDBOX_ID_PATTERN, Event

router = APIRouter(tags=["events"])
log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 10.0
BLOCK_MS = 15_000
BATCH = 500


def parse_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError as e:
        raise Invalid(f"{stream_id!r} is not an event id (they look like 1732530000000-0)") from e


def frame(stream_id: str, payload: dict[str, Any]) -> str:
    body = {"id": stream_id, **payload}
    return f"id: {stream_id}\nevent: {payload.get('kind', 'message')}\ndata: {json.dumps(body, default=str)}\n\n"


class EventStream(Response):
    """An ASGI response that streams frames, drops a client whose sends stall, and stops on disconnect."""

    def __init__(self, frames: AsyncIterator[str]) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        pump = asyncio.create_task(self._pump(send))
        gone = asyncio.create_task(self._disconnected(receive))
        _, pending = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.frames.aclose()  # type: ignore[attr-defined]
        if pump.done() and not pump.cancelled() and pump.result():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # Otherwise the response is left unfinished on purpose: the server then closes the connection, which is
        # how a dropped (or departed) client is told to reconnect with its Last-Event-ID.

    async def _pump(self, send: Send) -> bool:
        """Send every frame; False if the client stopped taking them (it is dropped)."""
        async for chunk in self.frames:
            message = {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
            try:
                await asyncio.wait_for(send(message), SEND_TIMEOUT_S)
            except TimeoutError:
                log.info("dropped a slow event-stream client; it will resume with Last-Event-ID")
                return False
        return True

    async def _disconnected(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            continue


def backfill(fleet: Fleet, sandbox: str | None, after: str, first_in_stream: str | None) -> list[str]:
    """Frames for events after `after` that the stream no longer holds (trimmed), from the database."""
    start, end = parse_id(after), parse_id(first_in_stream) if first_in_stream else None
    with Session(fleet.db) as session:
        anchor = session.exec(select(Event.id).where(Event.stream_id == after)).first()
        query = select(Event).where(col(Event.stream_id).is_not(None))
        if anchor is not None:
            query = query.where(col(Event.id) > anchor)
        if sandbox:
            query = query.where(Event.sandbox_id == sandbox)
        frames = []
        for row in session.exec(query.order_by(col(Event.id)).limit(50_000)):
            position = parse_id(str(row.stream_id))
            if position > start and (end is None or position < end):
                payload = {"sandbox_id": row.sandbox_id, "kind": row.kind, "data": row.data}
                frames.append(frame(str(row.stream_id), {**payload, "ts": row.created_at.timestamp()}))
        return frames


async def frames(
    fleet: Fleet, client: aioredis.Redis, *, sandbox: str | None, kinds: set[str] | None, after: str
) -> AsyncIterator[str]:
    key = fleet.keys.sandbox_stream(sandbox) if sandbox else fleet.keys.fleet_stream
    yield "retry: 2000\n\n"
    try:
        if after not in ("$", "0", "0-0"):
            first: Any = await client.xrange(key, count=1)
            first_id = first[0][0].decode() if first else None
            if first_id is None or parse_id(first_id) > parse_id(after):
                for chunk in await run_in_threadpool(backfill, fleet, sandbox, after, first_id):
                    yield chunk
        cursor = after
        while True:
            try:
                batch: Any = await client.xread({key: cursor}, count=BATCH, block=BLOCK_MS)
            except redis.RedisError as e:  # end the stream; the client comes back with its Last-Event-ID
                log.warning("event stream ended: Redis is not answering (%s)", e)
                return
            if not batch:
                yield ": keep-alive\n\n"
                continue
            frames_out: list[str] = []
            for raw_id, fields in batch[0][1]:
                cursor = raw_id.decode()
                kind = fields[b"k"].decode()
                if kinds is None or kind in kinds:
                    # The payload is already JSON: splice the id in rather than parse and re-encode it.
                    data = fields[b"e"].decode()
                    frames_out.append(f'id: {cursor}\nevent: {kind}\ndata: {{"id": "{cursor}", {data[1:]}\n\n')
            if frames_out:
                yield "".join(frames_out)
    finally:
        await client.aclose()


@router.get("/api/v1/events")
async def events(
    request: Request,
    _: Viewer,
    fleet: FleetDep,
    sandbox: Annotated[str | None, Query(pattern=SANDBOX_ID_PATTERN)] = None,
    kinds: Annotated[str | None, Query(description="comma-separated kinds, e.g. lifecycle,action,approval")] = None,
    after: Annotated[str | None, Query(description="start after this id; 0 = everything kept, $ = only new")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream:
    """The live event stream (SSE) of the fleet or of one sandbox; honours Last-Event-ID."""
    start = last_event_id or after or "$"
    if start not in ("$", "0"):
        parse_id(start)
    # Reads block for BLOCK_MS; the socket may wait a little longer than that, never less.
    client = aioredis.Redis.from_url(
        fleet.settings.redis_url, socket_connect_timeout=2, socket_timeout=BLOCK_MS / 1000 + 10
    )
    wanted = {k.strip() for k in kinds.split(",") if k.strip()} if kinds else None
    return EventStream(frames(fleet, client, sandbox=sandbox, kinds=wanted, after=start))
