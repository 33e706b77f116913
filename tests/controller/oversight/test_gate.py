"""The gate against a real database: which layers it reads, what it writes, and who it answers.

No Docker here: the gate's own reads and writes, with the fleet, template and sandbox layers stored as the API
stores them, checked in the rows it leaves behind (action, approval, audit, the sandbox's denial count).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from controller.auth import hash_token
from controller.config import Settings
from controller.db import engine_for, migrate, session_scope
from controller.errors import Forbidden, Unauthorized
from controller.events.bus import StoredEvents
from controller.flows.unit import Transactions
from controller.models import Sandbox, SandboxStatus, Template
from controller.oversight import audit
from controller.oversight.gate import GateOutcome, gate, subject_for_token
from controller.oversight.models import Action, Approval, AuditEntry, Grant, GrantScope
from controller.oversight.policy import Risk
from controller.oversight.policy_store import set_fleet_policy

FLEET_TEXT = """\
default: allow
rules:
  - tool: payments.*
    decision: deny
    message: no payments from this fleet
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    settings = Settings(home=tmp_path)
    migrate(settings)
    engine = engine_for(settings.db_url)
    yield engine
    engine.dispose()


def add_sandbox(engine: Engine, n: int, *, policy: Any = None, template: dict[str, Any] | None = None) -> str:
    with session_scope(engine) as session:
        template_id = None
        if template is not None:
            row = Template(name=f"t{n}", image="fleetgate/python:latest", **template)
            session.add(row)
            session.flush()
            template_id = row.id
        session.add(
            Sandbox(
                id=f"sb_{n:012d}",
                image="fleetgate/python:latest",
                cpus=1,
                memory_mb=512,
                pids=256,
                status=SandboxStatus.running,
                token_hash=hash_token(f"fgs_token{n}"),
                template_id=template_id,
                policy=policy,
            )
        )
    return f"sb_{n:012d}"


def propose(
    engine: Engine, n: int, tool: str, args: dict[str, Any] | None = None, risk: Risk = Risk.low
) -> GateOutcome:
    with Transactions(engine, StoredEvents(engine)).write() as t:
        subject = subject_for_token(t.session, secret=f"fgs_token{n}", sandbox_id=f"sb_{n:012d}")
        return gate(t.session, sandbox=subject, tool=tool, args=args or {}, risk=risk, escalate_after=3)


def _action(engine: Engine, action_id: int) -> Action:
    with Session(engine) as session:
        action = session.get(Action, action_id)
        assert action is not None
        return action


def test_the_fleet_layer_stored_as_text_overrides_an_allowing_sandbox_and_cites_its_line(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_fleet_policy(session, value=FLEET_TEXT, actor="admin")
    add_sandbox(engine, 1, policy="autonomous")
    outcome = propose(engine, 1, "payments.charge", {"amount": 5})
    reply = outcome.reply()
    assert (reply["status"], reply["decided_by"], reply["message"]) == (
        "denied",
        "policy",
        "no payments from this fleet",
    )
    action = _action(engine, reply["action_id"])
    assert (action.status, action.decision["layer"], action.decision["line"]) == ("denied", "fleet", 3)
    assert action.message == "no payments from this fleet"
    assert action.decided_at is not None
    allowed = propose(engine, 1, "read_file", {"path": "a"}).reply()
    assert (allowed["status"], allowed["args"]) == ("allowed", {"path": "a"})


def test_a_templates_policy_applies_to_its_sandboxes_unless_they_carry_their_own(engine: Engine) -> None:
    template = {"policy": {"default": "deny", "rules": [{"tool": "read_file", "decision": "allow"}]}}
    add_sandbox(engine, 2, template=template)
    add_sandbox(engine, 3, template={}, policy=None)  # neither: the supervised preset
    denied = propose(engine, 2, "deploy")
    assert denied.reply()["status"] == "denied"
    assert _action(engine, denied.action["id"]).decision["layer"] == "template"
    assert propose(engine, 2, "read_file", {"path": "x"}).reply()["status"] == "allowed"
    low = propose(engine, 3, "deploy")
    assert low.reply()["status"] == "allowed"
    assert _action(engine, low.action["id"]).verdict["rule_name"] == "low risk"
    assert propose(engine, 3, "deploy", risk=Risk.medium).reply()["status"] == "pending"


def test_an_ask_opens_an_approval_that_the_action_row_points_to(engine: Engine) -> None:
    add_sandbox(engine, 4, policy={"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]})
    outcome = propose(engine, 4, "deploy", {"env": "prod"})
    reply = outcome.reply()
    assert reply["status"] == "pending"
    assert reply["approval_id"] is not None
    action = _action(engine, reply["action_id"])
    with Session(engine) as session:
        approval = session.get(Approval, reply["approval_id"])
    assert approval is not None
    assert (action.approval_id, approval.action_id, approval.summary) == (
        approval.id,
        action.id,
        'deploy {"env": "prod"}',
    )
    assert action.decided_by is None
    assert action.decided_at is None


def test_a_remembered_grant_allows_what_would_ask(engine: Engine) -> None:
    sandbox_id = add_sandbox(engine, 5, policy={"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]})
    with session_scope(engine) as session:
        session.add(Grant(scope=GrantScope.sandbox, scope_ref=sandbox_id, tool="deploy", created_by="ann"))
    reply = propose(engine, 5, "deploy").reply()
    assert (reply["status"], reply["decided_by"]) == ("allowed", "grant")
    assert _action(engine, reply["action_id"]).decision["grant_id"] is not None


def test_denials_in_a_row_are_counted_on_the_sandbox_escalate_at_the_limit_and_reset(engine: Engine) -> None:
    sandbox_id = add_sandbox(
        engine, 6, policy={"default": "deny", "rules": [{"tool": "read_file", "decision": "allow"}]}
    )

    def denials() -> int:
        with Session(engine) as session:
            sandbox = session.get(Sandbox, sandbox_id)
            assert sandbox is not None
            return sandbox.consecutive_denials

    assert [propose(engine, 6, "rm").escalation for _ in range(2)] == [None, None]
    assert denials() == 2
    escalation = propose(engine, 6, "rm").escalation
    assert escalation is not None
    assert escalation.summary == "3 denied actions in a row"
    propose(engine, 6, "read_file")
    assert denials() == 0


def test_every_call_is_one_audit_entry_and_the_chain_verifies(engine: Engine) -> None:
    add_sandbox(engine, 7, policy="autonomous")
    ids = [propose(engine, 7, "read_file", {"path": str(i)}).action["id"] for i in range(5)]
    with Session(engine) as session:
        subjects = session.exec(select(AuditEntry.subject).order_by(col(AuditEntry.id))).all()
        result = audit.verify(session)
    assert [s for s in subjects if s.startswith("action:")] == [f"action:{i}" for i in ids]
    assert result.ok
    assert result.checked == len(subjects)


def test_a_token_answers_only_for_its_own_sandbox(engine: Engine) -> None:
    add_sandbox(engine, 8)
    add_sandbox(engine, 9)
    with session_scope(engine) as session:
        with pytest.raises(Forbidden, match="belongs to sandbox sb_000000000008"):
            subject_for_token(session, secret="fgs_token8", sandbox_id="sb_000000000009")
        with pytest.raises(Unauthorized, match="unknown or retired"):
            subject_for_token(session, secret="fgs_nobody", sandbox_id="sb_000000000008")
        with pytest.raises(Unauthorized, match="sandbox tokens only"):
            subject_for_token(session, secret="fgt_user", sandbox_id="sb_000000000008")
