"""The central approval queue: who may decide, votes and quorum, compare-and-set decisions, deadlines.

A decision is final. Deciding runs in a write session, so two approvers racing are serialised and the second
finds the item decided (a 409 naming who decided). One deny decides at once; approvals count towards the
quorum, one vote per person; where the policy separates duties, the person who started the sandbox (the item's
requester) never approves what it asks.
Nothing here commits. What a decision means outside the database (wake the agent, run its brokered action,
resume or stop the sandbox, tell the webhooks) is returned as typed effects for the flow to apply after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controller.effects import Effect, Pause, Resume, Stop, Wake, run_broker
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.events.store import emit
from controller.models import Role, Sandbox, User, utcnow
from controller.names import EventKind
from controller.oversight import audit
from controller.oversight.models import (
    Action,
    ActionStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    DecisionRequest,
    Grant,
    GrantScope,
    Vote,
)
from controller.oversight.notify import announce

SCOPE_ROLE = {GrantScope.sandbox: Role.approver, GrantScope.template: Role.operator, GrantScope.fleet: Role.admin}


@dataclass
class Decided:
    """A vote or a settlement, and what it means outside the database."""

    approval: Approval
    effects: list[Effect] = field(default_factory=list)
    grant: Grant | None = None
    final: bool = True


def effects_of(decided: Sequence[Decided]) -> list[Effect]:
    return [effect for d in decided for effect in d.effects]


def open_item(
    session: Session,
    *,
    kind: ApprovalKind,
    sandbox_id: str,
    requester_id: int | None,
    summary: str,
    actor: str,
    data: dict[str, Any] | None = None,
) -> tuple[Approval, list[Effect]]:
    """Put a checkpoint or an escalation in the queue; neither has a deadline. An escalation pauses the sandbox.
    `requester_id`: who may not decide it (set where the policy separates duties)."""
    item = Approval(kind=kind, sandbox_id=sandbox_id, summary=summary, data=data or {}, requester_id=requester_id)
    session.add(item)
    session.flush()
    emit(
        session, sandbox_id, EventKind.APPROVAL, approval_id=item.id, kind=kind.value, status="pending", summary=summary
    )
    audit.append(
        session,
        actor=actor,
        event=f"{kind.value}.opened",
        subject=f"approval:{item.id}",
        sandbox=sandbox_id,
        summary=summary,
        data=data or {},
    )
    effects: list[Effect] = [announce(session, item.id or 0, "approval.requested")]
    if kind == ApprovalKind.escalation:
        effects.append(Pause(sandbox_id, "escalated"))
    return item, effects


def get_approval(session: Session, approval_id: int) -> Approval:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id}; `fleetgate approvals` lists the pending ones")
    return approval


def may_decide(user: User, approval: Approval) -> str | None:
    """Why `user` may not decide `approval`, or None when they may."""
    role = Role(user.role)
    if not role.includes(Role.approver):
        return f"deciding needs the approver role; {user.name} is {role.value}"
    if not approval.approvers:
        return None
    for entry in approval.approvers:
        if entry.startswith("user:") and entry[5:] == user.name:
            return None
        if entry in Role.__members__ and role.includes(Role(entry)):
            return None
    return f"this approval needs one of {', '.join(approval.approvers)}; {user.name} is {role.value}"


def decide(session: Session, *, approval_id: int, user: User, request: DecisionRequest, via: str = "api") -> Decided:
    """Record `user`'s decision; settles the approval when it denies or completes the quorum."""
    approval = get_approval(session, approval_id)
    if approval.status != ApprovalStatus.pending:
        who = ", ".join(approval.decided_by) or "its deadline"
        raise Conflict(f"approval {approval_id} is already {approval.status.value} (by {who}); decisions are final")
    refusal = may_decide(user, approval)
    if refusal:
        raise Forbidden(refusal)
    approve = request.decision == "approve"
    if approve and approval.requester_id is not None and approval.requester_id == user.id:
        raise Forbidden(
            "you started this sandbox, so you cannot approve its actions; another approver must "
            "(its policy sets separation_of_duties)"
        )
    if request.remember is not None:
        _check_remember(user, approval, request.remember, approve)
    if request.args is not None and approval.kind != ApprovalKind.action:
        raise Invalid("only action approvals take edited args")
    if session.exec(select(Vote).where(Vote.approval_id == approval_id, Vote.user_id == user.id)).first():
        raise Conflict(f"{user.name} has voted on approval {approval_id} already; a person counts once")
    assert user.id is not None
    session.add(
        Vote(
            approval_id=approval_id,
            user_id=user.id,
            user=user.name,
            decision=request.decision,
            message=request.message,
            args=request.args,
            via=via,
        )
    )
    try:
        session.flush()
    except IntegrityError as e:  # the same person voting twice at the same moment (PostgreSQL runs both)
        raise Conflict(f"{user.name} has voted on approval {approval_id} already; a person counts once") from e
    audit.append(
        session,
        actor=user.name,
        event="approval.voted",
        subject=f"approval:{approval_id}",
        decision=request.decision,
        message=request.message,
        args=request.args,
        via=via,
    )
    approvals = session.exec(select(Vote).where(Vote.approval_id == approval_id, Vote.decision == "approve")).all()
    if approve and len(approvals) < approval.quorum:
        return Decided(approval, final=False)
    status = ApprovalStatus.approved if approve else ApprovalStatus.denied
    voters = [v.user for v in approvals] if approve else [user.name]
    settled = settle(session, approval, status, voters=voters, message=request.message, args=_edited(approvals))
    if approve and request.remember is not None:
        settled.grant = remember(session, approval=approval, scope=request.remember, user=user)
    return settled


def _edited(votes: list[Vote] | Any) -> dict[str, Any] | None:
    return next((v.args for v in votes if v.args is not None), None)


def _check_remember(user: User, approval: Approval, scope: GrantScope, approve: bool) -> None:
    if not approve:
        raise Invalid("remember goes with approve: a grant allows, it never denies")
    if approval.kind != ApprovalKind.action:
        raise Invalid("only action approvals can be remembered")
    if not approval.rememberable:
        raise Invalid("the policy rule that asked says this kind of action must be approved every time")
    if not Role(user.role).includes(SCOPE_ROLE[scope]):
        raise Forbidden(f"a {scope.value}-wide grant needs the {SCOPE_ROLE[scope].value} role")


def settle(
    session: Session,
    approval: Approval,
    status: ApprovalStatus,
    *,
    voters: list[str],
    message: str | None = None,
    args: dict[str, Any] | None = None,
) -> Decided:
    """Close the approval with compare-and-set and carry the outcome to its action and sandbox."""
    won = session.execute(
        sa.update(Approval)
        .where(col(Approval.id) == approval.id, col(Approval.status) == ApprovalStatus.pending)
        .values(status=status, decided_at=utcnow(), decided_by=voters, message=message, args=args)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"approval {approval.id} was decided by someone else a moment ago")
    session.refresh(approval)
    keys = [f"approval:{approval.id}"] + ([f"action:{approval.action_id}"] if approval.action_id is not None else [])
    decided = Decided(approval, effects=[Wake(tuple(keys))])
    emit(
        session,
        approval.sandbox_id,
        EventKind.APPROVAL,
        approval_id=approval.id,
        kind=approval.kind.value,
        status=status.value,
        summary=approval.summary,
        decided_by=voters,
        message=message,
    )
    if approval.kind == ApprovalKind.action and approval.action_id is not None:
        action = _carry_to_action(session, approval)
        if action.brokered and action.status == ActionStatus.allowed:
            decided.effects.append(run_broker(action.id or 0))
    elif approval.kind == ApprovalKind.escalation and status == ApprovalStatus.approved:
        decided.effects.append(Resume(approval.sandbox_id, "escalation resolved"))
    elif approval.kind == ApprovalKind.escalation and status != ApprovalStatus.cancelled:
        decided.effects.append(Stop(approval.sandbox_id, "escalation denied"))
    elif approval.kind == ApprovalKind.checkpoint and status not in (ApprovalStatus.approved, ApprovalStatus.cancelled):
        decided.effects.append(Stop(approval.sandbox_id, "checkpoint rejected"))
    audit.append(
        session,
        actor=", ".join(voters) or "system",
        event=f"approval.{status.value}",
        subject=f"approval:{approval.id}",
        kind=approval.kind.value,
        message=message,
        args=args,
    )
    decided.effects.append(announce(session, approval.id or 0, "approval.decided"))
    return decided


def _carry_to_action(session: Session, approval: Approval) -> Action:
    action = session.get(Action, approval.action_id)
    assert action is not None
    allowed = approval.status == ApprovalStatus.approved or (
        approval.status == ApprovalStatus.expired and approval.on_timeout == "allow"
    )
    action.status = ActionStatus.allowed if allowed else ActionStatus.denied
    action.decided_at = utcnow()
    if approval.status == ApprovalStatus.expired:
        action.decided_by = "timeout"
        action.decision = {**action.decision, "timeout": True, "on_timeout": approval.on_timeout}
    elif approval.status == ApprovalStatus.cancelled:
        action.decided_by = "cancelled"
        action.decision = {**action.decision, "cancelled": approval.message}
    else:
        action.decided_by = "person"
        action.decision = {**action.decision, "people": approval.decided_by}
    if allowed:
        action.final_args = approval.args
        action.broker_status = "queued" if action.brokered else None
    else:
        action.message = approval.message or (
            "no one decided in time" if approval.status == ApprovalStatus.expired else "denied by an approver"
        )
        if approval.status == ApprovalStatus.cancelled:
            action.message = f"cancelled: {approval.message}"
    session.add(action)
    emit(
        session,
        action.sandbox_id,
        EventKind.ACTION,
        action_id=action.id,
        tool=action.tool,
        args=action.args,
        status=action.status.value,
        decided_by=action.decided_by,
        reason=action.decision.get("reason"),
    )
    audit.append(
        session,
        actor=", ".join(approval.decided_by) or "system",
        event="action.decided",
        subject=f"action:{action.id}",
        status=action.status.value,
        decided_by=action.decided_by,
        final_args=action.final_args,
        message=action.message,
    )
    return action


def remember(session: Session, *, approval: Approval, scope: GrantScope, user: User) -> Grant:
    """Save the approval as a grant: the same action in `scope` is allowed from now on."""
    grant = proposed_grant(session, approval, scope, created_by=user.name)
    if scope == GrantScope.template and not grant.scope_ref:
        raise Invalid("this sandbox was not made from a template; remember it for the sandbox or the fleet")
    session.add(grant)
    session.flush()
    audit.append(
        session,
        actor=user.name,
        event="grant.created",
        subject=f"grant:{grant.id}",
        scope=scope.value,
        scope_ref=grant.scope_ref,
        tool=grant.tool,
        match=grant.match,
    )
    return grant


def proposed_grant(session: Session, approval: Approval, scope: GrantScope, *, created_by: str) -> Grant:
    """The grant that remembering this action approval in `scope` makes (not yet saved: previews show it)."""
    action = session.get(Action, approval.action_id) if approval.action_id is not None else None
    if action is None:
        raise Invalid("only action approvals can be remembered")
    sandbox = session.get(Sandbox, approval.sandbox_id)
    template_id = sandbox.template_id if sandbox is not None else None
    ref = {
        GrantScope.sandbox: approval.sandbox_id,
        GrantScope.template: str(template_id) if template_id is not None else "",
        GrantScope.fleet: None,
    }[scope]
    return Grant(
        scope=scope,
        scope_ref=ref,
        tool=action.tool,
        match=grant_match(action),
        created_by=created_by,
        approval_id=approval.id,
    )


def grant_match(action: Action) -> dict[str, Any]:
    """Matchers for exactly this action: the same shell segments, or the same argument values."""
    if action.tool == "shell":
        # Exact segment texts, never globs: a grant for `rm *.pyc` must not cover `rm -rf /x.pyc`.
        segments = [s.get("command") for s in action.verdict.get("segments", []) if s.get("command")]
        return {"args": {"command": {"in": segments or [str(action.args.get("command", ""))]}}}
    return {"args": {key: {"in": [value]} for key, value in action.args.items()}}


def cancel_for_sandbox(session: Session, sandbox_id: str, *, reason: str) -> list[Decided]:
    """Cancel a sandbox's pending items when it stops, goes or is removed: nobody is left to act on them."""
    pending = session.exec(
        select(Approval).where(Approval.sandbox_id == sandbox_id, Approval.status == ApprovalStatus.pending)
    ).all()
    return [settle(session, a, ApprovalStatus.cancelled, voters=[], message=reason) for a in pending]


def expire_due(session: Session) -> list[Decided]:
    """Apply the default outcome to every pending approval whose deadline has passed."""
    due = session.exec(
        select(Approval).where(Approval.status == ApprovalStatus.pending, col(Approval.deadline) < utcnow())
    ).all()
    return [settle(session, approval, ApprovalStatus.expired, voters=[]) for approval in due]
