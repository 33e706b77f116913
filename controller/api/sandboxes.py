"""Sandboxes: create, list, get, exec, stop, remove, logs, egress usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import Session

from controller.api.deps import ROW_ID_MAX, FleetDep, Operator, SandboxId, SessionDep, Viewer
from controller.errors import Invalid
from controller.events.store import history
from controller.models import (
    BudgetSpec,
    ExecRequest,
    ExecResult,
    Page,
    Resources,
    Sandbox,
    SandboxCreate,
    SandboxPublic,
    SandboxStatus,
    Template,
    WorkspaceUsage,
)
from controller.names import OUTPUT_KINDS
from controller.oversight.models import SandboxUsage
from controller.oversight.usage import usage_view
from controller.sandboxes import files
from controller.sandboxes.workspaces import WorkspaceStore

router = APIRouter(prefix="/api/v1/sandboxes", tags=["sandboxes"])


def to_public(session: Session, sandbox: Sandbox, workspaces: WorkspaceStore) -> SandboxPublic:
    template = session.get(Template, sandbox.template_id) if sandbox.template_id else None
    usage = workspaces.usage(sandbox.id) if sandbox.status != SandboxStatus.removed or sandbox.keep_volume else None
    return SandboxPublic(
        id=sandbox.id,
        status=sandbox.status,
        container_id=sandbox.container_id,
        host=sandbox.host,
        image=sandbox.image,
        template=template.name if template else None,
        resources=Resources(cpus=sandbox.cpus, memory_mb=sandbox.memory_mb, pids=sandbox.pids, disk_mb=sandbox.disk_mb),
        workspace=None if usage is None else WorkspaceUsage(used_mb=usage.used_mb, limit_mb=usage.limit_mb),
        command=sandbox.command,
        env=sandbox.env,
        volume=sandbox.volume,
        keep_volume=sandbox.keep_volume,
        exit_code=sandbox.exit_code,
        error=sandbox.error,
        created_at=sandbox.created_at,
        started_at=sandbox.started_at,
        expires_at=sandbox.expires_at,
        finished_at=sandbox.finished_at,
        last_heartbeat_at=sandbox.last_heartbeat_at,
    )


@router.post("", status_code=201, response_model=SandboxPublic)
def create_sandbox(body: SandboxCreate, user: Operator, fleet: FleetDep, session: SessionDep) -> SandboxPublic:
    """Create and start a hardened sandbox from an image or a template."""
    return to_public(session, fleet.sandboxes.create(body, owner=user), fleet.workspaces)


@router.get("", response_model=Page[SandboxPublic])
def list_sandboxes(
    _: Viewer,
    fleet: FleetDep,
    session: SessionDep,
    status: SandboxStatus | None = None,
    all: Annotated[bool, Query(description="include removed sandboxes")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=ROW_ID_MAX)] = 0,
) -> Page[SandboxPublic]:
    """Every sandbox with its live status (newest first)."""
    rows = fleet.sandboxes.find(status=status, include_removed=all, limit=limit + 1, offset=offset)
    more = len(rows) > limit
    items = [to_public(session, s, fleet.workspaces) for s in rows[:limit]]
    return Page(items=items, next=str(offset + limit) if more else None)


@router.get("/{sandbox_id}", response_model=SandboxPublic)
def get_sandbox(sandbox_id: SandboxId, _: Viewer, fleet: FleetDep, session: SessionDep) -> SandboxPublic:
    return to_public(session, fleet.sandboxes.get(sandbox_id), fleet.workspaces)


@router.post("/{sandbox_id}/exec", response_model=ExecResult)
def exec_in_sandbox(sandbox_id: SandboxId, body: ExecRequest, _: Operator, fleet: FleetDep) -> ExecResult:
    """Run one command in the sandbox as its user, in /workspace, and return its output."""
    return fleet.sandboxes.exec(sandbox_id, body)


@router.post("/{sandbox_id}/stop", response_model=SandboxPublic)
def stop_sandbox(sandbox_id: SandboxId, user: Operator, fleet: FleetDep, session: SessionDep) -> SandboxPublic:
    return to_public(
        session, fleet.sandboxes.stop(sandbox_id, actor=user.name, reason=f"stopped by {user.name}"), fleet.workspaces
    )


@router.post("/{sandbox_id}/pause", response_model=SandboxPublic)
def pause_sandbox(sandbox_id: SandboxId, user: Operator, fleet: FleetDep, session: SessionDep) -> SandboxPublic:
    """Freeze the sandbox's processes (docker pause) until it is resumed."""
    return to_public(
        session, fleet.sandboxes.pause(sandbox_id, actor=user.name, reason=f"paused by {user.name}"), fleet.workspaces
    )


@router.post("/{sandbox_id}/resume", response_model=SandboxPublic)
def resume_sandbox(sandbox_id: SandboxId, user: Operator, fleet: FleetDep, session: SessionDep) -> SandboxPublic:
    return to_public(
        session, fleet.sandboxes.resume(sandbox_id, actor=user.name, reason=f"resumed by {user.name}"), fleet.workspaces
    )


@router.delete("/{sandbox_id}", response_model=SandboxPublic)
def remove_sandbox(
    sandbox_id: SandboxId,
    user: Operator,
    fleet: FleetDep,
    session: SessionDep,
    keep_volume: Annotated[bool | None, Query(description="keep the workspace volume")] = None,
) -> SandboxPublic:
    """Remove the sandbox's container and, unless kept, its workspace volume."""
    sandbox = fleet.sandboxes.remove(
        sandbox_id, actor=user.name, keep_volume=keep_volume, reason=f"removed by {user.name}"
    )
    return to_public(session, sandbox, fleet.workspaces)


# Its own route rather than a field of the sandbox: the console reads it again whenever a call ends, and the
# sandbox answer asks the engine for the container's state each time (and the list would have to stay fast).
@router.get("/{sandbox_id}/usage")
def sandbox_usage(sandbox_id: SandboxId, _: Viewer, fleet: FleetDep, session: SessionDep) -> dict[str, Any]:
    """What the sandbox has spent through its egress door (model requests, tokens, connections, bytes), with its
    budget: its own figures, the controller's defaults for the rest (0 is no limit)."""
    sandbox = fleet.sandboxes.get(sandbox_id, live=False)
    return usage_view(session.get(SandboxUsage, sandbox_id), fleet.runtime.budget.but(sandbox.budget))


@router.put("/{sandbox_id}/budget")
def set_sandbox_budget(
    sandbox_id: SandboxId, body: BudgetSpec, user: Operator, fleet: FleetDep, session: SessionDep
) -> dict[str, Any]:
    """Change the sandbox's egress budget (the figures given; the others keep theirs), e.g. to let an agent that
    spent its budget go on after a person looked. Answers like GET .../usage."""
    figures = body.model_dump(exclude_none=True)
    if not figures:
        raise Invalid("give at least one of model_requests, model_tokens, connections, bytes (0 is no limit)")
    fleet.sandboxes.get(sandbox_id, live=False)  # a clear 404 for an unknown sandbox
    own = fleet.runtime.set_budget(sandbox_id, figures, actor=user.name)
    return usage_view(session.get(SandboxUsage, sandbox_id), fleet.runtime.budget.but(own))


class LogLine(BaseModel):
    id: int
    stream: str
    line: str
    ts: float | None


@router.get("/{sandbox_id}/logs", response_model=Page[LogLine])
def sandbox_logs(
    sandbox_id: SandboxId,
    _: Viewer,
    fleet: FleetDep,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=ROW_ID_MAX, description="only lines after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    tail: Annotated[int | None, Query(ge=1, le=10000, description="only the last N lines")] = None,
) -> Page[LogLine]:
    """The output lines the sandbox's command printed, oldest first; page with `after`, or the last `tail`."""
    fleet.sandboxes.get(sandbox_id, live=False)
    events = history(session, sandbox_id, kinds=OUTPUT_KINDS, after=after, limit=limit, tail=tail)
    items = [
        LogLine(id=e.id or 0, stream=e.kind, line=str(e.data.get("line", "")), ts=e.data.get("ts")) for e in events
    ]
    return Page(items=items, next=str(items[-1].id) if len(items) == limit else None)


@router.get("/{sandbox_id}/files")
def list_files(sandbox_id: SandboxId, _: Operator, fleet: FleetDep, path: str = "/workspace") -> dict[str, Any]:
    """A folder of the workspace, as the sandbox's user sees it (folders first)."""
    return fleet.sandboxes.workspace(sandbox_id, files.listing(path))


@router.get("/{sandbox_id}/files/content")
def file_content(sandbox_id: SandboxId, _: Operator, fleet: FleetDep, path: str) -> dict[str, Any]:
    """A file of the workspace as text (up to 256 KiB; binary files are reported, not shown)."""
    return fleet.sandboxes.workspace(sandbox_id, files.reading(path))
