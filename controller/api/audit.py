"""The audit log: search it, verify its chain, export it as JSON lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from controller.api.deps import Before, FleetDep, SessionDep, Viewer
from controller.oversight import audit
from controller.oversight.models import AuditEntry

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
def list_audit(
    _: Viewer,
    session: SessionDep,
    actor: str | None = None,
    event: str | None = None,
    subject: str | None = None,
    q: Annotated[str | None, Query(max_length=200, description="text to find in actor, event or subject")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Before = None,
) -> dict[str, Any]:
    """Audit entries newest first; filter by actor, event (prefix with `*`), subject, or free text."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if event:
        query = query.where(col(AuditEntry.event).like(event.replace("*", "%")))
    if subject:
        query = query.where(AuditEntry.subject == subject)
    if q:
        like = f"%{q}%"
        query = query.where(
            col(AuditEntry.actor).like(like) | col(AuditEntry.event).like(like) | col(AuditEntry.subject).like(like)
        )
    if before is not None:
        query = query.where(col(AuditEntry.id) < before)
    rows = list(session.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit + 1)))
    return {
        "items": [r.model_dump(mode="json") for r in rows[:limit]],
        "next": str(rows[limit - 1].id) if len(rows) > limit else None,
    }


@router.get("/verify")
def verify(
    _: Viewer,
    session: SessionDep,
    head: Annotated[
        str | None,
        Query(max_length=100, description="a head recorded earlier (ID:HASH): finds rows deleted from the end too"),
    ] = None,
) -> dict[str, Any]:
    """Recompute the whole chain; names every edited or deleted row."""
    return audit.verify(session, since=audit.Head.parse(head) if head is not None else None).as_dict()


@router.get("/export")
def export(_: Viewer, fleet: FleetDep) -> StreamingResponse:
    """The whole log as JSON lines, oldest first."""

    def lines() -> Iterator[str]:
        with Session(fleet.db) as session:
            for line in audit.export(session):
                yield line + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
