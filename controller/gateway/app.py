"""The runtime gateway: the only door out of a sandbox, served on a unix socket mounted at /run/fleetgate.

It serves runtime routes and nothing else. A sandbox's token is good for its own routes only: it can report what
the sandbox does and ask for decisions, never decide, never read other sandboxes, never reach the management API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from controller.auth import bearer
from controller.errors import Conflict, Invalid, NotFound
from controller.events.bus import EventSink
from controller.events.wakeups import Publisher, Waiter
from controller.fleet import Fleet
from controller.gateway import oversight
from controller.gateway.auth import CurrentSandbox, TokenCache
from controller.gateway.egress import EgressDoor
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


class ExecAnswer(BaseModel):
    """A supervisor's answer to a command of the controller's (see sandboxes/channel.py)."""

    exit_code: int = Field(ge=-(2**31), le=2**31 - 1)
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float = Field(ge=0)


EXEC_ID = r"^[0-9a-f]{16}$"


class LogEntry(BaseModel):
    message: str = Field(max_length=MAX_LINE)
    fields: dict[str, Any] = Field(default_factory=dict)


def create_gateway(fleet: Fleet, bus: EventSink) -> FastAPI:
    """The gateway app; `bus` takes the output lines straight (they are not part of any transaction)."""
    waiter = Waiter(fleet.settings.redis_url, fleet.keys)
    if isinstance(fleet.publisher, Publisher):
        fleet.publisher.also_wake(waiter.wake_soon)  # decisions made in this process wake at once, Redis or not
    tokens = TokenCache(fleet.db)
    egress = EgressDoor(fleet, waiter, tokens)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        waiter.start()
        fleet.channel.bind(asyncio.get_running_loop())
        yield
        fleet.channel.close()
        await egress.close()
        await waiter.stop()

    app = FastAPI(title="fleetgate runtime gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.fleet = fleet
    app.state.engine = fleet.db
    app.state.waiter = waiter
    app.state.egress = egress  # served on the same socket: see gateway/door.py
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

    @app.get(prefix + "/exec/next")
    async def exec_next(
        sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)],
        request: Request,
        wait_s: Annotated[float, Query(ge=0, le=30)] = 20,
    ) -> Response:
        """The supervisor's long-poll for commands (`exec`): one, or 204 after `wait_s`."""
        sandbox = await tokens.sandbox(bearer(request), sandbox_id)
        job = await fleet.channel.next(sandbox, wait_s)
        return JSONResponse(job) if job is not None else Response(status_code=204)

    @app.post(prefix + "/exec/{exec_id}/start", status_code=204)
    async def exec_start(
        sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)],
        exec_id: Annotated[str, Path(pattern=EXEC_ID)],
        request: Request,
    ) -> Response:
        sandbox = await tokens.sandbox(bearer(request), sandbox_id)
        if not fleet.channel.start(sandbox, exec_id):
            raise Conflict(f"command {exec_id} is not waiting to start (the controller ran it another way)")
        return Response(status_code=204)

    @app.post(prefix + "/exec/{exec_id}/result", status_code=204)
    async def exec_result(
        sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)],
        exec_id: Annotated[str, Path(pattern=EXEC_ID)],
        request: Request,
        body: ExecAnswer,
    ) -> Response:
        sandbox = await tokens.sandbox(bearer(request), sandbox_id)
        if not fleet.channel.deliver(sandbox, exec_id, body.model_dump()):
            raise NotFound(f"no command {exec_id} of sandbox {sandbox} is running")
        return Response(status_code=204)

    @app.post(prefix + "/exit")
    def exit_(sandbox: CurrentSandbox, body: Exit) -> dict[str, Any]:
        return {"status": fleet.runtime.exited(sandbox.id, exit_code=body.exit_code)}

    @app.post(prefix + "/log")
    def log(sandbox: CurrentSandbox, body: LogEntry) -> dict[str, bool]:
        fleet.runtime.log(sandbox.id, message=body.message, fields=body.fields)
        return {"ok": True}

    return app
