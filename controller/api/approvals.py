"""The central approval queue: list, read, decide (with quorum, edits and remember), take, preview a grant."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from controller.api.deps import Approver, FleetDep, SessionDep, Viewer, WriteSessionDep
from controller.errors import Conflict, Invalid
from controller.oversight import audit
from controller.oversight.approvals import decide, get_approval, grant_match, may_decide
from controller.oversight.gate import preview_grant
from controller.oversight.models import (
    Action,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    DecisionRequest,
    Grant,
    GrantScope,
    Vote,
)
from controller.oversight.queue import after_decision

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])


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


def to_public(approval: Approval, votes: list[Vote], action: Action | None) -> ApprovalPublic:
    return ApprovalPublic(
        **approval.model_dump(exclude={"requester_id"}),
        votes=[VotePublic(**v.model_dump()) for v in votes],
        action=None
        if action is None
        else {
            "id": action.id,
            "tool": action.tool,
            "args": action.args,
            "risk": action.risk,
            "reason": action.verdict.get("reason"),
            "status": action.status.value,
        },
    )


def publish(session: Session, approvals: list[Approval]) -> list[ApprovalPublic]:
    """Public views of many approvals with two queries in all (the queue is listed often and may be long)."""
    ids = [a.id for a in approvals]
    votes: dict[int, list[Vote]] = defaultdict(list)
    for vote in session.exec(select(Vote).where(col(Vote.approval_id).in_(ids)).order_by(col(Vote.id))):
        votes[vote.approval_id].append(vote)
    action_ids = [a.action_id for a in approvals if a.action_id is not None]
    actions = {a.id: a for a in session.exec(select(Action).where(col(Action.id).in_(action_ids)))}
    return [to_public(a, votes[a.id or 0], actions.get(a.action_id)) for a in approvals]


@router.get("", response_model=dict[str, Any])
def list_approvals(
    _: Viewer,
    session: SessionDep,
    status: ApprovalStatus | None = ApprovalStatus.pending,
    kind: ApprovalKind | None = None,
    sandbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[int | None, Query(ge=1, description="only items older than this id (paging)")] = None,
) -> dict[str, Any]:
    """The queue for the whole fleet, newest first; `status=` (empty) lists every status."""
    query = select(Approval)
    if status is not None:
        query = query.where(Approval.status == status)
    if kind is not None:
        query = query.where(Approval.kind == kind)
    if sandbox:
        query = query.where(Approval.sandbox_id == sandbox)
    if before is not None:
        query = query.where(col(Approval.id) < before)
    rows = list(session.exec(query.order_by(col(Approval.id).desc()).limit(limit + 1)))
    total = session.exec(select(func.count()).select_from(Approval).where(Approval.status == ApprovalStatus.pending))
    more = len(rows) > limit
    return {
        "items": publish(session, rows[:limit]),
        "next": str(rows[limit - 1].id) if more else None,
        "pending": total.one(),
    }


@router.get("/{approval_id}", response_model=ApprovalPublic)
def get_one(approval_id: int, _: Viewer, session: SessionDep) -> ApprovalPublic:
    return publish(session, [get_approval(session, approval_id)])[0]


@router.post("/{approval_id}/decision", response_model=dict[str, Any])
def decision(
    approval_id: int, body: DecisionRequest, user: Approver, fleet: FleetDep, session: WriteSessionDep
) -> dict[str, Any]:
    """Approve (optionally with edited args, optionally remembered as a grant) or deny with a message."""
    decided = decide(session, approval_id=approval_id, user=user, request=body)
    session.commit()
    after_decision(fleet, [decided])
    view = publish(session, [decided.approval])[0]
    return {
        "approval": view,
        "settled": decided.final,
        "grant": None if decided.grant is None else decided.grant.model_dump(mode="json"),
    }


@router.post("/{approval_id}/take", response_model=ApprovalPublic)
def take(approval_id: int, user: Approver, session: WriteSessionDep) -> ApprovalPublic:
    """Assign a pending item (an escalation, say) to yourself, so others see someone is on it."""
    approval = get_approval(session, approval_id)
    if approval.status != ApprovalStatus.pending:
        raise Conflict(f"approval {approval_id} is already {approval.status.value}")
    refusal = may_decide(user, approval)
    if refusal:
        raise Invalid(refusal)
    approval.assignee = user.name
    session.add(approval)
    audit.append(session, actor=user.name, event="approval.taken", subject=f"approval:{approval_id}")
    session.commit()
    return publish(session, [approval])[0]


@router.get("/{approval_id}/preview", response_model=dict[str, Any])
def preview(approval_id: int, _: Viewer, session: SessionDep, scope: GrantScope = GrantScope.sandbox) -> dict[str, Any]:
    """What remembering this approval would allow: the grant's match, and the past actions it would have covered."""
    approval = get_approval(session, approval_id)
    action = session.get(Action, approval.action_id) if approval.action_id else None
    if action is None:
        raise Invalid("only action approvals can be remembered")
    from controller.models import Sandbox

    sandbox = session.get(Sandbox, approval.sandbox_id)
    ref = {
        GrantScope.sandbox: approval.sandbox_id,
        GrantScope.template: str(sandbox.template_id if sandbox else ""),
        GrantScope.fleet: None,
    }[scope]
    grant = Grant(scope=scope, scope_ref=ref, tool=action.tool, match=grant_match(action), created_by="preview")
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
