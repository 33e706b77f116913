"""The runtime gateway: the only door out of a sandbox, served on a unix socket mounted at /run/fleetgate.

It serves runtime routes and nothing else. A sandbox's token is good for its own routes only: it can report what
the sandbox does and ask for decisions, never decide, never read other sandboxes, never reach the management API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from controller.auth import bearer
from controller.errors import Invalid
from controller.events.bus import EventSink
from controller.events.wakeups import Waiter
from controller.fleet import Fleet
from controller.gateway import oversight
from controller.gateway.auth import CurrentSandbox, TokenCache
from controller.main import install_error_handlers
from controller.models import SANDBOX_ID_PATTERN

MAX_LINE = 16 * 1024


class Hello(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pid: int | None = None
    python: str | None = None
    command: list[str] | None = None


MAX_BATCH = 5000


def parse_output(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """{"lines": [{"stream": "stdout"|"stderr", "line": str, "ts": float|null}, ...]} -> (kind, data) pairs."""
    try:
        lines = orjson.loads(body)["lines"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise Invalid('the body must be {"lines": [{"stream", "line", "ts"}, ...]}') from e
    if not isinstance(lines, list) or len(lines) > MAX_BATCH:
        raise Invalid(f"lines must be a list of at most {MAX_BATCH} items")
    items = []
    for item in lines:
        if not isinstance(item, dict) or item.get("stream") not in ("stdout", "stderr"):
            raise Invalid("each line needs a stream: stdout or stderr")
        line, ts = item.get("line"), item.get("ts")
        if not isinstance(line, str) or len(line) > MAX_LINE or not (ts is None or isinstance(ts, int | float)):
            raise Invalid(f"each line needs a line (a string of at most {MAX_LINE} characters) and a numeric ts")
        items.append((item["stream"], {"line": line, "ts": ts}))
    return items


class Exit(BaseModel):
    exit_code: int = Field(ge=-(2**31), le=2**31 - 1)


class LogEntry(BaseModel):
    message: str = Field(max_length=MAX_LINE)
    fields: dict[str, Any] = Field(default_factory=dict)


def create_gateway(fleet: Fleet, bus: EventSink) -> FastAPI:
    """The gateway app; `bus` takes the output lines straight (they are not part of any transaction)."""
    waiter = Waiter(fleet.settings.redis_url, fleet.keys)
    tokens = TokenCache(fleet.db)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        waiter.start()
        yield
        await waiter.stop()

    app = FastAPI(title="fleetgate runtime gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.fleet = fleet
    app.state.engine = fleet.db
    app.state.waiter = waiter
    app.include_router(oversight.router)
    install_error_handlers(app, body_limit=8 << 20)
    prefix = "/runtime/v1/sandboxes/{sandbox_id}"

    @app.get(prefix)
    def whoami(sandbox: CurrentSandbox) -> dict[str, Any]:
        return {"id": sandbox.id, "status": sandbox.status, "heartbeat_s": fleet.settings.heartbeat_s}

    @app.post(prefix + "/hello")
    def hello(sandbox: CurrentSandbox, body: Hello) -> dict[str, Any]:
        fleet.runtime.hello(sandbox.id, pid=body.pid, python=body.python, command=body.command)
        return {"heartbeat_s": fleet.settings.heartbeat_s}

    @app.post(prefix + "/heartbeat", status_code=204)
    def heartbeat(sandbox: CurrentSandbox) -> Response:
        fleet.runtime.heartbeat(sandbox.id)
        return Response(status_code=204)

    @app.post(prefix + "/output")
    async def output(sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)], request: Request) -> dict[str, int]:
        """The busiest route: every output line of every agent. Checked by hand rather than by a model, and the
        token by a short-lived cache, so a line costs microseconds here."""
        sandbox = await tokens.sandbox(bearer(request), sandbox_id)
        items = [(sandbox, kind, data) for kind, data in parse_output(await request.body())]
        await run_in_threadpool(bus.submit, items)  # blocks only when the publisher is far behind
        return {"accepted": len(items)}

    @app.post(prefix + "/exit")
    def exit_(sandbox: CurrentSandbox, body: Exit) -> dict[str, Any]:
        return {"status": fleet.runtime.exited(sandbox.id, exit_code=body.exit_code)}

    @app.post(prefix + "/log")
    def log(sandbox: CurrentSandbox, body: LogEntry) -> dict[str, bool]:
        fleet.runtime.log(sandbox.id, message=body.message, fields=body.fields)
        return {"ok": True}

    return app
