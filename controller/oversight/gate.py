"""The gate: every action an agent proposes is evaluated, recorded, and allowed, denied, or queued for a person.

Layers come from the fleet policy (admin), the sandbox's template and the sandbox itself; a sandbox with no
policy of its own and none from its template gets the `supervised` preset. An `ask` that a remembered grant
covers is allowed by that grant. Denials in a row (or a rule marked `escalate`) hand the sandbox to a person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, or_, select

from controller.events.store import record
from controller.models import Sandbox, Template, utcnow
from controller.oversight import audit
from controller.oversight.models import Action, ActionStatus, Approval, ApprovalKind, Grant, GrantScope
from controller.oversight.notify import announce
from controller.oversight.policy import (
    ActionRequest,
    Decision,
    Layer,
    Risk,
    Verdict,
    evaluate,
)
from controller.oversight.policy_store import compile_policy, fleet_layer

DEFAULT_PRESET = "supervised"
DEFAULT_TIMEOUT_S = 3600


def layers_for(session: Session, sandbox: Sandbox) -> list[Layer]:
    layers: list[Layer] = []
    fleet = fleet_layer(session)
    if fleet is not None:
        layers.append(Layer("fleet", compile_policy(fleet, source="fleet policy")))
    template = session.get(Template, sandbox.template_id) if sandbox.template_id else None
    if template is not None and template.policy is not None:
        layers.append(Layer("template", compile_policy(template.policy, source=f"template {template.name} policy")))
    if sandbox.policy is not None:
        layers.append(Layer("sandbox", compile_policy(sandbox.policy, source="sandbox policy")))
    elif template is None or template.policy is None:
        layers.append(Layer("sandbox", compile_policy(DEFAULT_PRESET)))
    return layers


def grant_policy(grant: Grant) -> dict[str, Any]:
    """A grant is an allow rule on its own: the action must match it entirely."""
    return {"default": "deny", "rules": [{"tool": grant.tool, "decision": "allow", **grant.match}]}


def grant_covers(grant: Grant, action: ActionRequest) -> bool:
    verdict = evaluate([Layer("sandbox", compile_policy(grant_policy(grant)))], action)
    return verdict.decision == Decision.allow


def grants_in_scope(session: Session, sandbox: Sandbox, tool: str) -> list[Grant]:
    scopes = [(Grant.scope == GrantScope.sandbox) & (Grant.scope_ref == sandbox.id), Grant.scope == GrantScope.fleet]
    if sandbox.template_id is not None:
        scopes.append((Grant.scope == GrantScope.template) & (Grant.scope_ref == str(sandbox.template_id)))
    query = select(Grant).where(col(Grant.revoked_at).is_(None), Grant.tool == tool, or_(*scopes))
    return list(session.exec(query.order_by(col(Grant.id))))


@dataclass
class GateOutcome:
    action: Action
    approval: Approval | None = None
    escalate: str | None = None

    def reply(self) -> dict[str, Any]:
        """What the agent's runtime receives."""
        status = self.action.status
        body: dict[str, Any] = {"action_id": self.action.id, "status": status.value}
        if status == ActionStatus.allowed:
            body["args"] = self.action.final_args if self.action.final_args is not None else self.action.args
        elif status == ActionStatus.denied:
            body["message"] = self.action.message
        if self.approval is not None:
            body["approval_id"] = self.approval.id
        body["decided_by"] = self.action.decided_by
        body["reason"] = self.action.decision.get("reason")
        if self.action.brokered:
            body["broker_status"] = self.action.broker_status
            body["result"] = self.action.result
        return body


def gate(
    session: Session,
    *,
    sandbox: Sandbox,
    tool: str,
    args: dict[str, Any],
    risk: Risk,
    escalate_after: int,
    brokered: bool = False,
) -> GateOutcome:
    """Decide one proposed action (in the caller's write session) and record it in the actions and the audit log."""
    request = ActionRequest(tool=tool, args=args, risk=risk)
    verdict = evaluate(layers_for(session, sandbox), request)
    action = Action(
        sandbox_id=sandbox.id, tool=tool, args=args, risk=risk.value, verdict=verdict.to_record(), brokered=brokered
    )
    outcome = GateOutcome(action)
    decision = verdict.decision
    if decision == Decision.ask and verdict.rememberable:
        grant = next((g for g in grants_in_scope(session, sandbox, tool) if grant_covers(g, request)), None)
        if grant is not None:
            _settle(
                action,
                ActionStatus.allowed,
                "grant",
                {"grant_id": grant.id, "reason": f"grant {grant.id} ({grant.scope})"},
            )
            decision = Decision.allow
    if decision == Decision.allow and action.status == ActionStatus.pending:
        _settle(action, ActionStatus.allowed, "policy", _policy_detail(verdict))
    elif decision == Decision.deny:
        _settle(action, ActionStatus.denied, "policy", _policy_detail(verdict))
        action.message = verdict.message or f"denied by policy: {verdict.reason}"
    if brokered and action.status == ActionStatus.allowed:
        action.broker_status = "queued"
    session.add(action)
    session.flush()
    _count_denials(sandbox, action, verdict, escalate_after, outcome)
    if decision == Decision.ask:
        action.decision = _policy_detail(verdict)
        outcome.approval = open_action_approval(session, sandbox=sandbox, action=action, verdict=verdict)
        action.approval_id = outcome.approval.id
    record(
        session,
        sandbox.id,
        "action",
        action_id=action.id,
        tool=tool,
        args=args,
        status=action.status.value,
        decided_by=action.decided_by,
        reason=verdict.reason,
        approval_id=action.approval_id,
    )
    audit.append(
        session,
        actor=f"sandbox:{sandbox.id}",
        event="action.requested",
        subject=f"action:{action.id}",
        tool=tool,
        args=args,
        risk=risk.value,
        status=action.status.value,
        decided_by=action.decided_by,
        reason=verdict.reason,
    )
    session.add(sandbox)
    return outcome


def _count_denials(sandbox: Sandbox, action: Action, verdict: Verdict, limit: int, outcome: GateOutcome) -> None:
    if action.status != ActionStatus.denied:
        sandbox.consecutive_denials = 0
        return
    sandbox.consecutive_denials += 1
    if verdict.escalate:
        outcome.escalate = f"hit a policy boundary: {verdict.reason}"
    elif limit and sandbox.consecutive_denials >= limit:
        outcome.escalate = f"{sandbox.consecutive_denials} denied actions in a row"


def _settle(action: Action, status: ActionStatus, by: str, detail: dict[str, Any]) -> None:
    action.status = status
    action.decided_by = by
    action.decision = detail
    action.decided_at = utcnow()


def _policy_detail(verdict: Verdict) -> dict[str, Any]:
    return {"layer": verdict.layer, "rule": verdict.rule_index, "line": verdict.line, "reason": verdict.reason}


def summarise(tool: str, args: dict[str, Any]) -> str:
    """An action in one line for people: a shell command as typed, other tools with their arguments."""
    if tool == "shell" and isinstance(args.get("command"), str):
        return f"$ {args['command']}"[:500]
    return f"{tool} {json.dumps(args, sort_keys=True)}"[:500]


def open_action_approval(session: Session, *, sandbox: Sandbox, action: Action, verdict: Verdict) -> Approval:
    timeout = verdict.timeout_s or DEFAULT_TIMEOUT_S
    approval = Approval(
        kind=ApprovalKind.action,
        sandbox_id=sandbox.id,
        action_id=action.id,
        summary=summarise(action.tool, action.args),
        data={"tool": action.tool, "args": action.args, "reason": verdict.reason},
        risk=action.risk,
        approvers=list(verdict.approvers or []),
        quorum=verdict.quorum or 1,
        on_timeout=verdict.on_timeout or "deny",
        rememberable=verdict.rememberable,
        requester_id=sandbox.owner_id,
        deadline=utcnow() + timedelta(seconds=timeout),
    )
    session.add(approval)
    session.flush()
    record(
        session,
        sandbox.id,
        "approval",
        approval_id=approval.id,
        kind=approval.kind.value,
        status="pending",
        summary=approval.summary,
        action_id=action.id,
    )
    announce(session, approval.id or 0, "approval.requested")
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
