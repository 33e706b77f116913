"""Decisions and the agent's side of them, on the in-memory engine: what a decision writes, and what it has done
after commit (the waiting agent woken, the webhooks queued, an escalated sandbox resumed or stopped)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret
from controller.errors import Conflict, Forbidden
from controller.models import Role, Sandbox, SandboxCreate, SandboxStatus
from controller.names import Task
from controller.oversight.models import Action, ActionStatus, Approval, ApprovalKind, ApprovalStatus, DecisionRequest
from controller.oversight.policy import Risk
from controller.sandboxes.spec import LABEL_SANDBOX
from tests.controller.flows.conftest import Fast

ASK_DEPLOY = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}, {"tool": "rm", "decision": "deny"}]}


def governed(fast: Fast, policy: Any = ASK_DEPLOY) -> tuple[Sandbox, str]:
    """A sandbox started by an operator, with the runtime token its agent would hold."""
    sandbox = fast.fleet.sandboxes.create(SandboxCreate(policy=policy), owner=fast.user("olivia", Role.operator))
    secret = new_secret(SANDBOX_TOKEN_PREFIX)
    with fast.fleet.tx.write() as t:
        row = t.session.get(Sandbox, sandbox.id)
        assert row is not None
        row.token_hash = hash_token(secret)
    return sandbox, secret


def propose(fast: Fast, sandbox: Sandbox, secret: str, tool: str, **args: Any) -> dict[str, Any]:
    return fast.fleet.runtime.propose(
        secret=secret, sandbox_id=sandbox.id, tool=tool, args=args, risk=Risk.low, brokered=False
    )


def test_an_asked_action_waits_and_a_decision_wakes_its_agent_once_committed(fast: Fast) -> None:
    sandbox, secret = governed(fast)
    reply = propose(fast, sandbox, secret, "deploy", env="prod")
    assert reply["status"] == "pending"
    assert (reply["approval_id"], "approval.requested") in fast.tasks.of(Task.NOTIFY)
    assert fast.wakes.keys == []
    decided = fast.fleet.decisions.decide(
        reply["approval_id"], user=fast.user("alice", Role.approver), request=DecisionRequest(decision="approve")
    )
    assert decided.final
    assert fast.wakes.keys == [f"approval:{reply['approval_id']}", f"action:{reply['action_id']}"]
    assert (reply["approval_id"], "approval.decided") in fast.tasks.of(Task.NOTIFY)
    action = fast.row(Action, reply["action_id"])
    assert (action.status, action.decided_by) == (ActionStatus.allowed, "person")
    assert [e.event for e in fast.audit()][-3:] == ["approval.voted", "action.decided", "approval.approved"]


def test_alone_on_a_vm_the_person_who_started_a_sandbox_approves_its_actions(fast: Fast) -> None:
    sandbox, secret = governed(fast)
    reply = propose(fast, sandbox, secret, "deploy")
    owner = fast.user("olivia", Role.operator)  # an operator may approve too: one person, one token
    decided = fast.fleet.decisions.decide(reply["approval_id"], user=owner, request=DecisionRequest(decision="approve"))
    assert decided.final
    assert fast.row(Action, reply["action_id"]).status == ActionStatus.allowed


@pytest.mark.parametrize("layer", ["sandbox", "fleet"])
def test_with_separation_of_duties_the_starter_is_refused_and_nothing_is_written(fast: Fast, layer: str) -> None:
    if layer == "fleet":
        fast.fleet.admin.set_fleet_policy({"default": "allow", "separation_of_duties": True}, actor="admin")
        sandbox, secret = governed(fast)
    else:
        sandbox, secret = governed(fast, {**ASK_DEPLOY, "separation_of_duties": True})
    reply = propose(fast, sandbox, secret, "deploy")
    item = fast.fleet.runtime.open(sandbox.id, kind=ApprovalKind.checkpoint, summary="stage 1", data={})
    owner = fast.user("olivia", Role.operator)
    before = len(fast.audit())
    for approval_id in (reply["approval_id"], item["approval_id"]):
        with pytest.raises(Forbidden, match=r"you started this sandbox.*separation_of_duties"):
            fast.fleet.decisions.decide(approval_id, user=owner, request=DecisionRequest(decision="approve"))
    assert fast.wakes.keys == []
    assert len(fast.audit()) == before
    assert fast.row(Approval, reply["approval_id"]).status == ApprovalStatus.pending
    approver = fast.user("alice", Role.approver)
    assert fast.fleet.decisions.decide(
        reply["approval_id"], user=approver, request=DecisionRequest(decision="approve")
    ).final


def test_a_second_decision_is_a_conflict(fast: Fast) -> None:
    sandbox, secret = governed(fast)
    reply = propose(fast, sandbox, secret, "deploy")
    deny = DecisionRequest(decision="deny", message="not today")
    fast.fleet.decisions.decide(reply["approval_id"], user=fast.user("alice", Role.approver), request=deny)
    with pytest.raises(Conflict, match="already denied"):
        fast.fleet.decisions.decide(reply["approval_id"], user=fast.user("bob", Role.approver), request=deny)
    assert fast.row(Action, reply["action_id"]).message == "not today"


def test_denials_in_a_row_escalate_pause_the_sandbox_and_a_person_resumes_it(fast: Fast) -> None:
    sandbox, secret = governed(fast)
    for _ in range(3):
        assert propose(fast, sandbox, secret, "rm")["status"] == "denied"
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.paused
    (container,) = fast.engine.by_label(LABEL_SANDBOX, sandbox.id)
    assert container.status == "paused"
    (escalation,) = [a for a in fast.audit() if a.event == "escalation.opened"]
    approval_id = int(escalation.subject.split(":")[1])
    fast.fleet.decisions.decide(
        approval_id, user=fast.user("alice", Role.approver), request=DecisionRequest(decision="approve")
    )
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.running
    assert container.status == "running"
    resumed = fast.audit(f"sandbox:{sandbox.id}")[-1]
    assert (resumed.actor, resumed.event, resumed.data["source"]) == (
        "system",
        "sandbox.resumed",
        "escalation resolved",
    )


def test_a_rejected_checkpoint_stops_the_sandbox(fast: Fast) -> None:
    sandbox, _ = governed(fast)
    item = fast.fleet.runtime.open(sandbox.id, kind=ApprovalKind.checkpoint, summary="stage 1", data={})
    fast.fleet.decisions.decide(
        item["approval_id"], user=fast.user("alice", Role.approver), request=DecisionRequest(decision="deny")
    )
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.stopped


def test_an_agent_that_exits_cancels_what_it_waited_for(fast: Fast) -> None:
    sandbox, secret = governed(fast)
    reply = propose(fast, sandbox, secret, "deploy")
    assert fast.fleet.runtime.exited(sandbox.id, exit_code=2) == SandboxStatus.exited
    assert fast.row(Approval, reply["approval_id"]).status == ApprovalStatus.cancelled
    assert f"action:{reply['action_id']}" in fast.wakes.keys
    exited = fast.audit(f"sandbox:{sandbox.id}")[-1]
    assert (exited.event, exited.data["exit_code"]) == ("sandbox.exited", 2)


def test_the_sweep_applies_the_default_outcome_and_wakes_the_agent(fast: Fast) -> None:
    policy = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask", "timeout_s": 1}]}
    sandbox, secret = governed(fast, policy)
    reply = propose(fast, sandbox, secret, "deploy")
    with fast.fleet.tx.write() as t:
        approval = t.session.get(Approval, reply["approval_id"])
        assert approval is not None
        assert approval.deadline is not None
        approval.deadline = approval.deadline.replace(year=2000)
    assert fast.fleet.outbox.sweep() == [reply["approval_id"]]
    action = fast.row(Action, reply["action_id"])
    assert (action.status, action.decided_by) == (ActionStatus.denied, "timeout")
    assert f"action:{reply['action_id']}" in fast.wakes.keys
