"""The gate: every action an agent proposes is evaluated, recorded, and allowed, denied, or queued for a person.

Layers come from the fleet policy (admin), the sandbox's template and the sandbox itself; a sandbox with no
policy of its own and none from its template gets the `supervised` preset. An `ask` that a remembered grant
covers is allowed by that grant. Denials in a row (or a rule marked `escalate`) hand the sandbox to a person.

This is every agent's hot path, so it reads and writes with statements built once, here, rather than through the
ORM, whose statement building and object tracking cost more CPU than SQLite's own work on this path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, or_, select

from controller.auth import hash_token, sandbox_token_owner
from controller.effects import Effect, run_broker
from controller.events.store import emit
from controller.models import Sandbox, Template, utcnow
from controller.names import EventKind
from controller.oversight import audit
from controller.oversight.approvals import open_item
from controller.oversight.models import (
    Action,
    ActionStatus,
    Approval,
    ApprovalKind,
    FleetPolicy,
    Grant,
    GrantScope,
)
from controller.oversight.notify import announce
from controller.oversight.policy import (
    ActionRequest,
    Decision,
    Layer,
    Risk,
    Verdict,
    evaluate,
)
from controller.oversight.policy_store import StoredPolicy, compile_policy

DEFAULT_PRESET = "supervised"
DEFAULT_TIMEOUT_S = 3600

_sandboxes: sa.Table = Sandbox.__table__  # type: ignore[attr-defined]
_actions: sa.Table = Action.__table__  # type: ignore[attr-defined]
_fleet: sa.Table = FleetPolicy.__table__  # type: ignore[attr-defined]
_templates: sa.Table = Template.__table__  # type: ignore[attr-defined]
_SUBJECT = sa.select(
    _sandboxes.c.id,
    _sandboxes.c.template_id,
    _sandboxes.c.policy,
    _sandboxes.c.consecutive_denials,
    _sandboxes.c.owner_id,
).where(_sandboxes.c.token_hash == sa.bindparam("token_hash"))
_FLEET_POLICY = sa.select(_fleet.c.source, _fleet.c.document).where(_fleet.c.id == 1)
_TEMPLATE_POLICY = sa.select(_templates.c.name, _templates.c.policy).where(
    _templates.c.id == sa.bindparam("template_id")
)
_INSERT_ACTION = sa.insert(_actions).returning(_actions.c.id)
_SET_APPROVAL = (
    sa.update(_actions).where(_actions.c.id == sa.bindparam("action")).values(approval_id=sa.bindparam("approval"))
)
_DENIED = (  # counted in the database, so two calls at once cannot both count from the same number
    sa.update(_sandboxes)
    .where(_sandboxes.c.id == sa.bindparam("sandbox"))
    .values(consecutive_denials=_sandboxes.c.consecutive_denials + 1)
    .returning(_sandboxes.c.consecutive_denials)
)
_NOT_DENIED = sa.update(_sandboxes).where(_sandboxes.c.id == sa.bindparam("sandbox")).values(consecutive_denials=0)


@dataclass(frozen=True)
class Subject:
    """The sandbox as the gate sees it, read by its token inside the transaction that decides."""

    id: str
    template_id: int | None
    policy: StoredPolicy | None
    consecutive_denials: int
    owner_id: int | None


def subject_for_token(session: Session, *, secret: str, sandbox_id: str) -> Subject:
    """The sandbox asking, by its runtime token, read inside the transaction that decides (the gate's hot path
    reads only what it decides with); Unauthorized or Forbidden for a token that is not this sandbox's."""
    row = session.connection().execute(_SUBJECT, {"token_hash": hash_token(secret)}).first()
    return sandbox_token_owner(secret, None if row is None else Subject(*row), sandbox_id)


def layers_for(session: Session, sandbox: Subject | Sandbox) -> list[Layer]:
    """The policy layers that govern a sandbox: fleet, its template's, its own (or the default preset)."""
    layers: list[Layer] = []
    conn = session.connection()
    fleet = conn.execute(_FLEET_POLICY).first()
    if fleet is not None:
        stored = fleet.source if fleet.source is not None else fleet.document
        layers.append(Layer("fleet", compile_policy(stored, source="fleet policy")))
    template = None
    if sandbox.template_id is not None:
        template = conn.execute(_TEMPLATE_POLICY, {"template_id": sandbox.template_id}).first()
    if template is not None and template.policy is not None:
        layers.append(Layer("template", compile_policy(template.policy, source=f"template {template.name} policy")))
    if sandbox.policy is not None:
        layers.append(Layer("sandbox", compile_policy(sandbox.policy, source="sandbox policy")))
    elif template is None or template.policy is None:
        layers.append(Layer("sandbox", compile_policy(DEFAULT_PRESET)))
    return layers


def separated(layers: list[Layer]) -> bool:
    """Whether any layer separates duties (a person may not approve what their own sandbox asks)."""
    return any(layer.policy.separation_of_duties for layer in layers)


def grant_policy(grant: Grant) -> dict[str, Any]:
    """A grant is an allow rule on its own: the action must match it entirely."""
    return {"default": "deny", "rules": [{"tool": grant.tool, "decision": "allow", **grant.match}]}


def grant_covers(grant: Grant, action: ActionRequest) -> bool:
    verdict = evaluate([Layer("sandbox", compile_policy(grant_policy(grant)))], action)
    return verdict.decision == Decision.allow


def grants_in_scope(session: Session, sandbox: Subject, tool: str) -> list[Grant]:
    scopes = [(Grant.scope == GrantScope.sandbox) & (Grant.scope_ref == sandbox.id), Grant.scope == GrantScope.fleet]
    if sandbox.template_id is not None:
        scopes.append((Grant.scope == GrantScope.template) & (Grant.scope_ref == str(sandbox.template_id)))
    query = select(Grant).where(col(Grant.revoked_at).is_(None), Grant.tool == tool, or_(*scopes))
    return list(session.exec(query.order_by(col(Grant.id))))


def action_reply(action: Mapping[str, Any], approval_id: int | None = None) -> dict[str, Any]:
    """What the agent's runtime receives about an action (its row's columns)."""
    status = ActionStatus(action["status"])
    body: dict[str, Any] = {"action_id": action["id"], "status": status.value}
    if status == ActionStatus.allowed:
        body["args"] = action["final_args"] if action["final_args"] is not None else action["args"]
    elif status == ActionStatus.denied:
        body["message"] = action["message"]
    if approval_id is not None:
        body["approval_id"] = approval_id
    body["decided_by"] = action["decided_by"]
    body["reason"] = action["decision"].get("reason")
    if action["brokered"]:
        body["broker_status"] = action["broker_status"]
        body["result"] = action.get("result")
    return body


@dataclass
class GateOutcome:
    """The recorded action, the approval it waits on (for `ask`), the escalation it caused, and the effects."""

    action: dict[str, Any]
    approval: Approval | None = None
    escalation: Approval | None = None
    effects: list[Effect] = field(default_factory=list)

    def reply(self) -> dict[str, Any]:
        return action_reply(self.action, self.approval.id if self.approval is not None else None)


def gate(
    session: Session,
    *,
    sandbox: Subject,
    tool: str,
    args: dict[str, Any],
    risk: Risk,
    escalate_after: int,
    brokered: bool = False,
) -> GateOutcome:
    """Decide one proposed action (in the caller's write session) and record it in the actions and the audit log;
    denials in a row, or a rule marked `escalate`, open an escalation too."""
    request = ActionRequest(tool=tool, args=args, risk=risk)
    layers = layers_for(session, sandbox)
    verdict = evaluate(layers, request)
    requester = sandbox.owner_id if separated(layers) else None
    decision, by, detail = verdict.decision, "policy", _policy_detail(verdict)
    if decision == Decision.ask and verdict.rememberable:
        grant = next((g for g in grants_in_scope(session, sandbox, tool) if grant_covers(g, request)), None)
        if grant is not None:
            decision, by = Decision.allow, "grant"
            detail = {"grant_id": grant.id, "reason": f"grant {grant.id} ({grant.scope})"}
    status = _STATUS[decision]
    now = utcnow()
    action: dict[str, Any] = {
        "sandbox_id": sandbox.id,
        "tool": tool,
        "args": args,
        "risk": risk.value,
        "status": status,
        "final_args": None,
        "message": None,
        "decided_by": None if status == ActionStatus.pending else by,
        "decision": detail,
        "verdict": verdict.to_record(),
        "approval_id": None,
        "brokered": brokered,
        "broker_status": "queued" if brokered and status == ActionStatus.allowed else None,
        "created_at": now,
        "decided_at": None if status == ActionStatus.pending else now,
    }
    if status == ActionStatus.denied:
        action["message"] = verdict.message or f"denied by policy: {verdict.reason}"
    action["id"] = session.connection().execute(_INSERT_ACTION, action).scalar_one()
    outcome = GateOutcome(action)
    escalate = _count_denials(session, sandbox, status, verdict, escalate_after)
    if status == ActionStatus.pending:
        outcome.approval = open_action_approval(
            session, sandbox=sandbox, action=action, verdict=verdict, requester_id=requester
        )
        outcome.effects.append(announce(session, outcome.approval.id or 0, "approval.requested"))
        action["approval_id"] = outcome.approval.id
        session.connection().execute(_SET_APPROVAL, {"action": action["id"], "approval": outcome.approval.id})
    elif action["broker_status"] == "queued":
        outcome.effects.append(run_broker(action["id"]))
    record_decision(session, action, reason=verdict.reason)
    if escalate:
        outcome.escalation, opened = open_item(
            session,
            kind=ApprovalKind.escalation,
            sandbox_id=sandbox.id,
            requester_id=requester,
            summary=escalate,
            actor="controller",
        )
        outcome.effects.extend(opened)
    return outcome


def record_decision(session: Session, action: Mapping[str, Any], *, reason: str | None) -> None:
    """A gated action as it was decided: on the live stream and in the audit log."""
    emit(
        session,
        action["sandbox_id"],
        EventKind.ACTION,
        action_id=action["id"],
        tool=action["tool"],
        args=action["args"],
        status=ActionStatus(action["status"]).value,
        decided_by=action["decided_by"],
        reason=reason,
        approval_id=action["approval_id"],
    )
    audit.append(
        session,
        actor=f"sandbox:{action['sandbox_id']}",
        event="action.requested",
        subject=f"action:{action['id']}",
        tool=action["tool"],
        args=action["args"],
        risk=action["risk"],
        status=ActionStatus(action["status"]).value,
        decided_by=action["decided_by"],
        reason=reason,
    )


_STATUS = {Decision.allow: ActionStatus.allowed, Decision.deny: ActionStatus.denied, Decision.ask: ActionStatus.pending}


def _count_denials(
    session: Session, sandbox: Subject, status: ActionStatus, verdict: Verdict, limit: int
) -> str | None:
    """Count denials in a row; why the sandbox must be handed to a person now, or None."""
    if status != ActionStatus.denied:
        if sandbox.consecutive_denials:
            session.connection().execute(_NOT_DENIED, {"sandbox": sandbox.id})
        return None
    denials = session.connection().execute(_DENIED, {"sandbox": sandbox.id}).scalar_one()
    if verdict.escalate:
        return f"hit a policy boundary: {verdict.reason}"
    if limit and denials >= limit:
        return f"{denials} denied actions in a row"
    return None


def _policy_detail(verdict: Verdict) -> dict[str, Any]:
    return {"layer": verdict.layer, "rule": verdict.rule_index, "line": verdict.line, "reason": verdict.reason}


def summarise(tool: str, args: dict[str, Any]) -> str:
    """An action in one line for people: a shell command as typed, other tools with their arguments."""
    if tool == "shell" and isinstance(args.get("command"), str):
        return f"$ {args['command']}"[:500]
    return f"{tool} {json.dumps(args, sort_keys=True)}"[:500]


def open_action_approval(
    session: Session, *, sandbox: Subject, action: Mapping[str, Any], verdict: Verdict, requester_id: int | None
) -> Approval:
    timeout = verdict.timeout_s or DEFAULT_TIMEOUT_S
    approval = Approval(
        kind=ApprovalKind.action,
        sandbox_id=sandbox.id,
        action_id=action["id"],
        summary=summarise(action["tool"], action["args"]),
        data={"tool": action["tool"], "args": action["args"], "reason": verdict.reason},
        risk=action["risk"],
        approvers=list(verdict.approvers or []),
        quorum=verdict.quorum or 1,
        on_timeout=verdict.on_timeout or "deny",
        rememberable=verdict.rememberable,
        requester_id=requester_id,
        deadline=utcnow() + timedelta(seconds=timeout),
    )
    session.add(approval)
    session.flush()
    emit(
        session,
        sandbox.id,
        EventKind.APPROVAL,
        approval_id=approval.id,
        kind=approval.kind.value,
        status="pending",
        summary=approval.summary,
        action_id=action["id"],
    )
    return approval


def preview_grant(session: Session, *, grant: Grant, limit: int = 200) -> list[Action]:
    """Past actions in the grant's scope that it would have allowed, newest first."""
    query = select(Action).where(Action.tool == grant.tool)
    if grant.scope == GrantScope.sandbox:
        query = query.where(Action.sandbox_id == grant.scope_ref)
    elif grant.scope == GrantScope.template:
        members = select(Sandbox.id).where(Sandbox.template_id == int(grant.scope_ref or 0))
        query = query.where(col(Action.sandbox_id).in_(members))
    past = session.exec(query.order_by(col(Action.id).desc()).limit(5000)).all()
    matched = [a for a in past if grant_covers(grant, ActionRequest(tool=a.tool, args=a.args, risk=Risk(a.risk)))]
    return matched[:limit]
