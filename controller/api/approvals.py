"""The central approval queue: list, read, decide (with quorum, edits and remember), take, preview a grant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from controller.api.deps import Approver, Before, FleetDep, RowId, SessionDep, Viewer
from controller.oversight.approvals import get_approval, proposed_grant
from controller.oversight.gate import preview_grant
from controller.oversight.models import (
    Action,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    DecisionRequest,
    GrantScope,
    Vote,
)

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])
STATUS_FILTER = "^(|all|" + "|".join(s.value for s in ApprovalStatus) + ")$"


class VotePublic(BaseModel):
    user: str
    decision: str
    message: str | None
    via: str
    created_at: datetime


class ApprovalPublic(BaseModel):
    id: int
    kind: ApprovalKind
    status: ApprovalStatus
    sandbox_id: str
    action_id: int | None
    summary: str
    data: dict[str, Any]
    risk: str
    approvers: list[str]
    quorum: int
    votes: list[VotePublic]
    deadline: datetime | None
    on_timeout: str
    rememberable: bool
    assignee: str | None
    message: str | None
    args: dict[str, Any] | None
    decided_by: list[str]
    created_at: datetime
    decided_at: datetime | None
    action: dict[str, Any] | None = None


_FIELDS = [name for name in ApprovalPublic.model_fields if name not in ("votes", "action")]


_VOTE_COLUMNS: tuple[Any, ...] = (Vote.approval_id, Vote.user, Vote.decision, Vote.message, Vote.via, Vote.created_at)
_ACTION_COLUMNS: tuple[Any, ...] = (
    Action.id,
    Action.tool,
    Action.args,
    Action.risk,
    Action.status,
    col(Action.verdict)["reason"].as_string().label("reason"),
)


def publish(session: Session, approvals: Sequence[Any]) -> list[dict[str, Any]]:
    """Public views of many approvals: three queries in all, plain rows, no per-item objects (the queue may be
    listed with a thousand items, and often)."""
    votes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    query = sa.select(*_VOTE_COLUMNS).where(col(Vote.approval_id).in_([a.id for a in approvals])).order_by(col(Vote.id))
    for approval_id, *vote in session.execute(query):
        votes[approval_id].append(dict(zip(("user", "decision", "message", "via", "created_at"), vote, strict=True)))
    action_ids = [a.action_id for a in approvals if a.action_id is not None]
    actions = {
        row.id: {**row._asdict(), "status": str(row.status)}
        for row in session.execute(sa.select(*_ACTION_COLUMNS).where(col(Action.id).in_(action_ids)))
    }
    views = []
    for approval in approvals:
        view: dict[str, Any] = {name: getattr(approval, name) for name in _FIELDS}
        view["votes"] = votes[approval.id or 0]
        view["action"] = actions.get(approval.action_id)
        views.append(view)
    return views


@router.get("", response_model=dict[str, Any])
def list_approvals(
    _: Viewer,
    session: SessionDep,
    status: Annotated[
        str | None,
        Query(pattern="^(|all|pending|approved|denied|expired|cancelled)$", description="empty or all: every status"),
    ] = "pending",
    kind: ApprovalKind | None = None,
    sandbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Before = None,
) -> dict[str, Any]:
    """The queue for the whole fleet, newest first; `status=` (empty) lists every status."""
    query = sa.select(*(getattr(Approval, name) for name in _FIELDS))
    if status and status != "all":
        query = query.where(col(Approval.status) == ApprovalStatus(status))
    if kind is not None:
        query = query.where(col(Approval.kind) == kind)
    if sandbox:
        query = query.where(col(Approval.sandbox_id) == sandbox)
    if before is not None:
        query = query.where(col(Approval.id) < before)
    rows = list(session.execute(query.order_by(col(Approval.id).desc()).limit(limit + 1)))
    total = session.exec(select(func.count()).select_from(Approval).where(Approval.status == ApprovalStatus.pending))
    more = len(rows) > limit
    return {
        "items": publish(session, rows[:limit]),
        "next": str(rows[limit - 1].id) if more else None,
        "pending": total.one(),
    }


@router.get("/{approval_id}", response_model=ApprovalPublic)
def get_one(approval_id: RowId, _: Viewer, session: SessionDep) -> dict[str, Any]:
    return publish(session, [get_approval(session, approval_id)])[0]


@router.post("/{approval_id}/decision", response_model=dict[str, Any])
def decision(
    approval_id: RowId, body: DecisionRequest, user: Approver, fleet: FleetDep, session: SessionDep
) -> dict[str, Any]:
    """Approve (optionally with edited args, optionally remembered as a grant) or deny with a message."""
    decided = fleet.decisions.decide(approval_id, user=user, request=body)
    view = publish(session, [decided.approval])[0]
    return {
        "approval": view,
        "settled": decided.final,
        "grant": None if decided.grant is None else decided.grant.model_dump(mode="json"),
    }


@router.post("/{approval_id}/take", response_model=ApprovalPublic)
def take(approval_id: RowId, user: Approver, fleet: FleetDep, session: SessionDep) -> dict[str, Any]:
    """Assign a pending item (an escalation, say) to yourself, so others see someone is on it."""
    return publish(session, [fleet.decisions.take(approval_id, user=user)])[0]


@router.get("/{approval_id}/preview", response_model=dict[str, Any])
def preview(
    approval_id: RowId, _: Viewer, session: SessionDep, scope: GrantScope = GrantScope.sandbox
) -> dict[str, Any]:
    """What remembering this approval would allow: the grant's match, and the past actions it would have covered."""
    grant = proposed_grant(session, get_approval(session, approval_id), scope, created_by="preview")
    matched = preview_grant(session, grant=grant)
    return {
        "scope": scope.value,
        "tool": grant.tool,
        "match": grant.match,
        "matched": len(matched),
        "actions": [
            {
                "id": a.id,
                "sandbox_id": a.sandbox_id,
                "args": a.args,
                "status": a.status.value,
                "created_at": a.created_at,
            }
            for a in matched[:50]
        ],
    }
