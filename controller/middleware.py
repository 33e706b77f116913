"""ASGI middleware of the API app: a cap on request bodies, a JSON 500 for anything unexpected, and the security
headers every response carries."""

from __future__ import annotations

import logging
import uuid

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("fleetgate")


class _TooLarge(Exception):
    pass


class _Watched:
    """An ASGI `send` that notes whether the response has begun (after that, an error can only close it)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with a JSON 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        watched = _Watched(send)
        try:
            await self.app(scope, counting_receive, watched)
        except _TooLarge:
            if watched.started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than this server accepts ({self.limit} bytes)"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


class CatchAll:
    """Any error no handler took: logged with a reference and answered with a JSON 500.

    Starlette's own handler for `Exception` sends its response and then re-raises to the server, which drops
    the connection, so a client saw a reset instead of the 500. Here the error ends with the response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _Watched(send)
        try:
            await self.app(scope, receive, watched)
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("unhandled error %s on %s %s", ref, scope.get("method"), scope.get("path"))
            if watched.started:  # half an answer is out: only closing the connection can tell the client
                raise
            detail = f"internal error (reference {ref}); the controller log has the details"
            await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)


# The console is served from this origin only, with no inline script or style, so it can run under a strict
# policy; nothing may frame it (clickjacking an approve button), and no URL leaks in a Referer (decision links
# carry their token in the path).
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# FastAPI's interactive API pages load Swagger UI / ReDoc from a CDN and start them with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and Referrer-Policy on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if str(scope.get("path", "")).startswith(DOCS_PATHS) else CONSOLE_CSP
        added = [*_COMMON, (b"content-security-policy", csp.encode())]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in added if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
