"""The runtime gateway: the only door out of a sandbox, served on a unix socket mounted at /run/fleetgate.

It serves runtime routes and nothing else. A sandbox's token is good for its own routes only: it can report what
the sandbox does and ask for decisions, never decide, never read other sandboxes, never reach the management API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from controller.auth import SANDBOX_TOKEN_PREFIX, bearer, hash_token
from controller.db import SessionDep
from controller.errors import Forbidden, Unauthorized
from controller.events.store import record, record_many
from controller.fleet import Fleet
from controller.main import BodyLimit, install_error_handlers
from controller.models import SANDBOX_ID_PATTERN, Sandbox, SandboxStatus, utcnow

MAX_LINE = 16 * 1024


def sandbox_for_token(*, session: Session, secret: str, sandbox_id: str) -> Sandbox:
    if not secret.startswith(SANDBOX_TOKEN_PREFIX):
        raise Unauthorized("the runtime gateway takes sandbox tokens only")
    sandbox = session.exec(select(Sandbox).where(Sandbox.token_hash == hash_token(secret))).first()
    if sandbox is None:
        raise Unauthorized("unknown or retired sandbox token")
    if sandbox.id != sandbox_id:
        raise Forbidden(f"this token belongs to sandbox {sandbox.id}, not {sandbox_id}")
    return sandbox


def current_sandbox(
    request: Request,
    session: SessionDep,
    sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)],
) -> Sandbox:
    return sandbox_for_token(session=session, secret=bearer(request), sandbox_id=sandbox_id)


CurrentSandbox = Annotated[Sandbox, Depends(current_sandbox)]


class Hello(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pid: int | None = None
    python: str | None = None
    command: list[str] | None = None


class OutputLine(BaseModel):
    stream: str = Field(pattern="^(stdout|stderr)$")
    line: str = Field(max_length=MAX_LINE)
    ts: float | None = None


class OutputBatch(BaseModel):
    lines: list[OutputLine] = Field(max_length=5000)


class Exit(BaseModel):
    exit_code: int


class LogEntry(BaseModel):
    message: str = Field(max_length=MAX_LINE)
    fields: dict[str, Any] = Field(default_factory=dict)


def create_gateway(fleet: Fleet) -> FastAPI:
    app = FastAPI(title="fleetgate runtime gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fleet = fleet
    app.state.engine = fleet.engine
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=8 << 20)
    prefix = "/runtime/v1/sandboxes/{sandbox_id}"

    @app.get(prefix)
    def whoami(sandbox: CurrentSandbox) -> dict[str, Any]:
        return {"id": sandbox.id, "status": sandbox.status, "heartbeat_s": fleet.settings.heartbeat_s}

    @app.post(prefix + "/hello")
    def hello(sandbox: CurrentSandbox, body: Hello, session: SessionDep) -> dict[str, Any]:
        sandbox.last_heartbeat_at = utcnow()
        record(
            session,
            sandbox.id,
            "agent",
            state="started",
            pid=body.pid,
            python=body.python,
            command=body.command,
        )
        session.add(sandbox)
        session.commit()
        return {"heartbeat_s": fleet.settings.heartbeat_s}

    @app.post(prefix + "/heartbeat", status_code=204)
    def heartbeat(sandbox: CurrentSandbox, session: SessionDep) -> Response:
        sandbox.last_heartbeat_at = utcnow()
        session.add(sandbox)
        session.commit()
        return Response(status_code=204)

    @app.post(prefix + "/output")
    def output(sandbox: CurrentSandbox, body: OutputBatch, session: SessionDep) -> dict[str, int]:
        count = record_many(
            session, sandbox.id, ((item.stream, {"line": item.line, "ts": item.ts}) for item in body.lines)
        )
        session.commit()
        return {"accepted": count}

    @app.post(prefix + "/exit")
    def exit_(sandbox: CurrentSandbox, body: Exit, session: SessionDep) -> dict[str, Any]:
        sandbox.exit_code = body.exit_code
        sandbox.finished_at = utcnow()
        if sandbox.status == SandboxStatus.running:
            sandbox.status = SandboxStatus.exited
        record(session, sandbox.id, "agent", state="exited", exit_code=body.exit_code)
        session.add(sandbox)
        session.commit()
        return {"status": sandbox.status}

    @app.post(prefix + "/log")
    def log(sandbox: CurrentSandbox, body: LogEntry, session: SessionDep) -> dict[str, bool]:
        record(session, sandbox.id, "log", message=body.message, fields=body.fields)
        session.commit()
        return {"ok": True}

    return app
