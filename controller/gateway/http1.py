"""HTTP/1.1 on the egress door's byte streams (h11), in the shapes agents' clients understand.

An error goes back in the dialect of whoever asked: an Anthropic or OpenAI client shows the `message` of its own
error shape to the model, so a refusal's reason reaches the agent as text it can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import h11
import orjson

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
READ = 1 << 18
MAX_HEAD = 64 * 1024

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class ClientGone(Exception):
    """The sandbox side closed or broke the connection."""


def server() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
    """The next HTTP event from the client, reading as needed; h11.RemoteProtocolError for malformed input."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        try:
            data = await reader.read(READ)
        except (ConnectionError, OSError) as e:
            raise ClientGone(str(e)) from e
        conn.receive_data(data)


def error_body(kind: str, status: int, message: str) -> bytes:
    """A refusal in the dialect of the API the client speaks: anthropic, openai, or plain JSON."""
    if kind == "anthropic":
        kind_name = _ANTHROPIC_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind_name, "message": message}})
    if kind == "openai":
        code = {403: "permission_denied", 429: "rate_limit_exceeded", 404: "not_found"}.get(status, "fleetgate_error")
        return orjson.dumps({"error": {"message": message, "type": "fleetgate", "code": code}})
    return orjson.dumps({"detail": message})


def header_safe(text: str, limit: int = 300) -> bytes:
    """Text a header value can carry: one line of latin-1."""
    return " ".join(text.split())[:limit].encode("latin-1", "replace")


async def respond(
    conn: h11.Connection, writer: asyncio.StreamWriter, status: int, message: str, *, kind: str = "http"
) -> None:
    """An error answer, and the connection closed after it (the client may be mid-request)."""
    body = error_body(kind, status, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-fleetgate-reason", header_safe(message)),
        (b"connection", b"close"),
    ]
    try:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
    except (ConnectionError, OSError, h11.LocalProtocolError):
        pass


def raw_error(status: int, reason: str, message: str) -> bytes:
    """An error answer written without an h11 state (before the first request was read)."""
    body = orjson.dumps({"detail": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n"
    ).encode()
    return head + b"x-fleetgate-reason: " + header_safe(message) + b"\r\n\r\n" + body


def forwardable(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """Headers that may cross the proxy: no hop-by-hop ones, none the `Connection` header names, none in `drop`."""
    pairs = [(name.lower(), value) for name, value in headers]
    named = {token.strip().lower() for name, value in pairs if name == b"connection" for token in value.split(b",")}
    return [(n, v) for n, v in pairs if n not in HOP_BY_HOP and n not in named and n not in drop]


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counted: list[int], slot: int) -> None:
    """Copy bytes one way until the reader ends; `counted[slot]` grows by what passed."""
    try:
        while True:
            data = await reader.read(READ)
            if not data:
                break
            counted[slot] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass
