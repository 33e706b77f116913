"""Sandbox use cases on the in-memory engine: each change is one transaction with its event, its audit entry and
the cancellation of the sandbox's queue items; a failure anywhere in it leaves none of them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from controller.errors import Conflict, EngineError, EngineUnavailable, Invalid, SandboxNotFound
from controller.flows import sandboxes as flows_module
from controller.models import ExecRequest, Sandbox, SandboxCreate, SandboxStatus, Template, utcnow
from controller.names import Task
from controller.oversight import audit
from controller.oversight.models import Approval, ApprovalKind, ApprovalStatus
from controller.sandboxes import lifecycle
from controller.sandboxes.engine import ContainerState
from controller.sandboxes.spec import LABEL_INSTANCE, LABEL_SANDBOX
from tests.controller.flows.conftest import Fast


class Boom(Exception):
    """A failure between a change and its audit entry (a full disk, a killed connection)."""


def create(fast: Fast, **request: Any) -> Sandbox:
    return fast.fleet.sandboxes.create(SandboxCreate(**request), owner=fast.user())


def fail_audit_of(monkeypatch: pytest.MonkeyPatch, event: str) -> None:
    """Make the audit append of `event` fail, after the change itself has been written in the transaction."""
    real = audit.append

    def append(session: Session, *, actor: str, event: str, subject: str = "", **data: Any) -> None:
        if event == wanted:
            raise Boom(event)
        real(session, actor=actor, event=event, subject=subject, **data)

    wanted = event
    monkeypatch.setattr(flows_module.audit, "append", append)


def test_a_create_is_the_row_the_hardened_container_its_credentials_and_one_audit_entry(fast: Fast) -> None:
    sandbox = create(fast, env={"WHO": "me"}, resources={"cpus": 0.5, "memory_mb": 128})
    assert sandbox.status == SandboxStatus.running
    (container,) = fast.engine.by_label(LABEL_SANDBOX, sandbox.id)
    assert container.id == sandbox.container_id
    assert container.status == "running"
    assert (container.spec["network_mode"], container.spec["cap_drop"], container.spec["read_only"]) == (
        "none",
        ["ALL"],
        True,
    )
    assert container.labels[LABEL_INSTANCE] == "fast"
    assert sandbox.volume in fast.engine.volumes_
    credentials = json.loads((fast.settings.sandboxes_dir / sandbox.id / "sandbox.json").read_text())
    assert (credentials["sandbox_id"], credentials["env"]) == (sandbox.id, {"WHO": "me"})
    assert credentials["token"].startswith("fgs_")
    (entry,) = fast.audit(f"sandbox:{sandbox.id}")
    assert (entry.actor, entry.event, entry.data["resources"]["memory_mb"]) == ("olivia", "sandbox.created", 128)
    assert [e["status"] for e in fast.events(sandbox.id)] == ["running"]


@pytest.mark.parametrize("step", ["create_volume", "create_container", "start"])
def test_a_create_that_fails_on_the_engine_leaves_nothing_behind(fast: Fast, step: str) -> None:
    fast.engine.fail_next(step, EngineError("the engine failed"))
    with pytest.raises(EngineError):
        create(fast)
    assert fast.engine.containers_ == {}
    assert fast.engine.volumes_ == {}
    with Session(fast.fleet.db) as session:
        assert session.exec(select(Sandbox)).all() == []
    assert list(fast.settings.sandboxes_dir.iterdir()) == []
    assert fast.audit() == []


def test_a_create_whose_audit_entry_fails_leaves_no_sandbox_and_no_container(
    fast: Fast, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_audit_of(monkeypatch, "sandbox.created")
    with pytest.raises(Boom):
        create(fast)
    with Session(fast.fleet.db) as session:
        assert session.exec(select(Sandbox)).all() == []
    assert fast.engine.containers_ == {}
    assert fast.audit() == []


@pytest.mark.parametrize(
    ("change", "event", "before"),
    [
        ("stop", "sandbox.stopped", SandboxStatus.running),
        ("pause", "sandbox.paused", SandboxStatus.running),
        ("remove", "sandbox.removed", SandboxStatus.running),
    ],
)
def test_a_lifecycle_change_and_its_audit_entry_commit_together_or_not_at_all(
    fast: Fast, monkeypatch: pytest.MonkeyPatch, change: str, event: str, before: SandboxStatus
) -> None:
    sandbox = create(fast)
    checkpoint = open_item(fast, sandbox.id, ApprovalKind.checkpoint)
    fail_audit_of(monkeypatch, event)
    call = getattr(fast.fleet.sandboxes, change)
    with pytest.raises(Boom):
        call(sandbox.id, actor="olivia", **({"reason": "test"} if change == "pause" else {}))
    assert fast.row(Sandbox, sandbox.id).status == before
    assert [e.event for e in fast.audit(f"sandbox:{sandbox.id}")] == ["sandbox.created"]
    assert [e["status"] for e in fast.events(sandbox.id)] == ["running"]
    assert fast.row(Approval, checkpoint).status == ApprovalStatus.pending  # nor were its items cancelled
    monkeypatch.undo()
    call(sandbox.id, actor="olivia", **({"reason": "test"} if change == "pause" else {}))  # once it can be written
    assert fast.audit(f"sandbox:{sandbox.id}")[-1].event == event
    assert fast.row(Sandbox, sandbox.id).status != before


def open_item(fast: Fast, sandbox_id: str, kind: ApprovalKind) -> int:
    reply = fast.fleet.runtime.open(sandbox_id, kind=kind, summary="look at this", data={})
    return int(reply["approval_id"])


def test_stopping_cancels_the_sandboxs_queue_items_and_wakes_their_agents(fast: Fast) -> None:
    sandbox = create(fast)
    item = open_item(fast, sandbox.id, ApprovalKind.checkpoint)
    fast.wakes.keys.clear()
    stopped = fast.fleet.sandboxes.stop(sandbox.id, actor="olivia")
    assert stopped.status == SandboxStatus.stopped
    approval = fast.row(Approval, item)
    assert (approval.status, approval.message) == (ApprovalStatus.cancelled, "the sandbox was stopped")
    assert f"approval:{item}" in fast.wakes.keys
    assert (item, "approval.decided") in fast.tasks.of(Task.NOTIFY)
    assert fast.engine.by_label(LABEL_SANDBOX, sandbox.id)[0].status == "exited"


def test_a_container_removed_behind_the_controllers_back_makes_the_sandbox_gone(fast: Fast) -> None:
    sandbox = create(fast)
    item = open_item(fast, sandbox.id, ApprovalKind.checkpoint)
    fast.engine.vanish(str(sandbox.container_id))
    seen = fast.fleet.sandboxes.get(sandbox.id)
    assert seen.status == SandboxStatus.gone
    assert fast.row(Approval, item).status == ApprovalStatus.cancelled
    assert fast.audit(f"sandbox:{sandbox.id}")[-1].actor == "engine"
    assert fast.audit(f"sandbox:{sandbox.id}")[-1].event == "sandbox.gone"


def test_an_exit_the_engine_reports_is_saved_with_its_code(fast: Fast) -> None:
    sandbox = create(fast)
    fast.engine.exit(str(sandbox.container_id), 3)
    (listed,) = fast.fleet.sandboxes.find()
    assert (listed.status, listed.exit_code) == (SandboxStatus.exited, 3)
    assert fast.events(sandbox.id)[-1] == {"status": "exited", "source": "engine", "exit_code": 3}


def test_a_stale_reading_does_not_turn_a_removed_sandbox_into_gone(fast: Fast) -> None:
    sandbox = create(fast)
    stale = fast.fleet.sandboxes.get(sandbox.id, live=False)  # read, then the engine is asked...
    fast.fleet.sandboxes.remove(sandbox.id, actor="olivia")  # ...while someone removes it
    fast.fleet.sandboxes.observe(stale, None)  # the reading found no container
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.removed
    assert stale.status == SandboxStatus.removed  # the reader now holds what was saved
    assert [e.event for e in fast.audit(f"sandbox:{sandbox.id}")] == ["sandbox.created", "sandbox.removed"]


def test_a_reading_that_is_still_current_is_saved(fast: Fast) -> None:
    sandbox = create(fast)
    fast.fleet.sandboxes.observe(sandbox, ContainerState("exited", 3))
    row = fast.row(Sandbox, sandbox.id)
    assert (row.status, row.exit_code) == (SandboxStatus.exited, 3)
    assert row.finished_at is not None


def test_exec_answers_only_a_running_sandbox_and_says_why(fast: Fast) -> None:
    sandbox = create(fast)
    result = fast.fleet.sandboxes.exec(sandbox.id, ExecRequest(command=["echo", "ok"]))
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    fast.fleet.sandboxes.pause(sandbox.id, actor="olivia", reason="paused by olivia")
    with pytest.raises(Conflict, match="is paused; only a running sandbox takes commands"):
        fast.fleet.sandboxes.exec(sandbox.id, ExecRequest(command=["echo", "ok"]))


def test_a_paused_sandbox_is_unpaused_before_it_is_stopped(fast: Fast) -> None:
    sandbox = create(fast)
    fast.fleet.sandboxes.pause(sandbox.id, actor="olivia", reason="paused by olivia")
    assert fast.fleet.sandboxes.stop(sandbox.id, actor="olivia").status == SandboxStatus.stopped
    operations = [op for op, subject in fast.engine.calls if subject == sandbox.container_id]
    assert operations[-2:] == ["unpause", "stop"]


def test_a_removed_sandbox_is_not_found_and_its_workspace_is_gone_unless_kept(fast: Fast) -> None:
    kept = create(fast)
    dropped = create(fast)
    fast.fleet.sandboxes.remove(kept.id, actor="olivia", keep_volume=True)
    fast.fleet.sandboxes.remove(dropped.id, actor="olivia")
    assert kept.volume in fast.engine.volumes_
    assert dropped.volume not in fast.engine.volumes_
    assert fast.engine.containers_ == {}
    with pytest.raises(SandboxNotFound):
        fast.fleet.sandboxes.remove(kept.id, actor="olivia")


def test_an_engine_that_is_away_is_a_clear_error_and_changes_nothing(fast: Fast) -> None:
    sandbox = create(fast)
    fast.engine.fail_next("stop", EngineUnavailable("local", "memory://", "connection refused"))
    with pytest.raises(EngineUnavailable, match="Start it"):
        fast.fleet.sandboxes.stop(sandbox.id, actor="olivia")
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.running


# --- the warm pool ------------------------------------------------------------------------------------------


def pooled_template(fast: Fast, size: int = 2) -> Template:
    with fast.fleet.tx.write() as t:
        template = Template(name="warm", image="fleetgate/python:latest", pool_size=size)
        t.session.add(template)
    assert template.id is not None
    assert fast.fleet.upkeep.refill(template.id) == size
    return template


def test_a_create_from_a_template_claims_a_warm_sandbox_and_asks_for_a_refill_a_moment_later(fast: Fast) -> None:
    template = pooled_template(fast)
    warm = {c.id for c in fast.engine.containers_.values()}
    fast.tasks.sent.clear()
    sandbox = create(fast, template="warm", env={"WHO": "claimed"})
    assert sandbox.container_id in warm
    assert len(fast.engine.containers_) == 2  # nothing new was made
    assert fast.tasks.of(Task.POOL_REFILL) == [(template.id,)]
    assert fast.tasks.delays == [1.0]  # after the claimed sandbox's first command, not competing with it
    credentials = json.loads((fast.settings.sandboxes_dir / sandbox.id / "sandbox.json").read_text())
    assert credentials["env"] == {"WHO": "claimed"}
    (entry,) = fast.audit(f"sandbox:{sandbox.id}")
    assert (entry.event, entry.data["source"]) == ("sandbox.created", "pool")


def test_a_warm_sandbox_that_stopped_is_never_handed_out(fast: Fast) -> None:
    pooled_template(fast, size=1)
    (warm,) = fast.engine.containers_.values()
    fast.engine.exit(warm.id, 137)
    sandbox = create(fast, template="warm")
    assert sandbox.container_id != warm.id  # made cold instead
    assert warm.id not in fast.engine.containers_  # and the dead one destroyed, with its row
    with Session(fast.fleet.db) as session:
        assert [s.id for s in session.exec(select(Sandbox))] == [sandbox.id]


def test_a_pool_that_shrank_is_drained_to_its_size(fast: Fast) -> None:
    template = pooled_template(fast, size=3)
    assert template.id is not None
    assert fast.fleet.upkeep.drain(template.id, keep=1) == 2
    assert len(fast.engine.containers_) == 1


# --- reaping and reconciling --------------------------------------------------------------------------------


def test_an_expired_sandbox_is_reaped_and_the_audit_says_so(fast: Fast) -> None:
    sandbox = create(fast, ttl_s=60)
    with fast.fleet.tx.write() as t:
        row = t.session.get(Sandbox, sandbox.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert fast.fleet.upkeep.reap() == [sandbox.id]
    assert fast.row(Sandbox, sandbox.id).status == SandboxStatus.removed
    assert (fast.audit()[-1].actor, fast.audit()[-1].event) == ("system", "sandbox.expired")


def test_reconcile_removes_orphans_marks_the_vanished_gone_and_adopts_what_a_crash_left(fast: Fast) -> None:
    vanished, orphaned, crashed = create(fast), create(fast), create(fast)
    fast.engine.vanish(str(vanished.container_id))
    with fast.fleet.tx.write() as t:
        t.session.delete(t.session.get(Sandbox, orphaned.id))
        row = t.session.get(Sandbox, crashed.id)
        assert row is not None
        row.status = SandboxStatus.creating
    with fast.fleet.tx.write() as t:
        row = t.session.get(Sandbox, crashed.id)
        assert row is not None
        row.created_at -= timedelta(minutes=5)
    report = fast.fleet.upkeep.reconcile()
    assert report["gone"] == [vanished.id]
    assert report["orphans_removed"] == [orphaned.id]
    assert report["adopted"] == [crashed.id]
    assert orphaned.volume in report["volumes_removed"]
    assert fast.row(Sandbox, crashed.id).status == SandboxStatus.running
    assert [c.labels[LABEL_SANDBOX] for c in fast.engine.containers_.values()] == [crashed.id]


def test_reconcile_leaves_a_create_in_flight_alone(fast: Fast) -> None:
    plan = fast.fleet.sandboxes.plan(SandboxCreate())
    with fast.fleet.tx.write() as t:  # its row is written; its container is not made yet
        row = lifecycle.new_row(plan, owner=None, instance="fast", pooled=False)
        t.session.add(row)
    fast.engine.run_to_end({"image": "fleetgate/python:latest"}, 1)
    report = fast.fleet.upkeep.reconcile()
    assert report["gone"] == []
    assert fast.row(Sandbox, row.id).status == SandboxStatus.creating


def test_reconcile_takes_a_row_left_creating_for_long_without_a_container_for_gone(fast: Fast) -> None:
    plan = fast.fleet.sandboxes.plan(SandboxCreate())
    with fast.fleet.tx.write() as t:
        row = lifecycle.new_row(plan, owner=None, instance="fast", pooled=False)
        row.created_at = utcnow() - timedelta(minutes=5)
        t.session.add(row)
    assert fast.fleet.upkeep.reconcile()["gone"] == [row.id]


# --- the workspace's size --------------------------------------------------------------------------------------


def test_every_workspace_is_size_limited_five_gib_unless_asked_otherwise(fast: Fast) -> None:
    default, small = create(fast), create(fast, resources={"disk_mb": 256})
    assert fast.workspaces.made == {default.id: 5120, small.id: 256}
    assert (default.disk_mb, small.disk_mb) == (5120, 256)
    opts = fast.engine.volume_opts[str(small.volume)]
    assert opts == {"type": "none", "o": "bind", "device": f"/memory/workspaces/{small.id}"}
    fast.fleet.sandboxes.remove(small.id, actor="olivia")
    fast.fleet.sandboxes.remove(default.id, actor="olivia", keep_volume=True)
    assert fast.workspaces.made == {default.id: 5120}  # a kept workspace stays, with its limit


def test_where_the_host_cannot_limit_a_workspace_it_is_a_plain_volume(fast: Fast) -> None:
    fast.workspaces.why_not = "the controller does not run as root, which mounting a workspace needs"
    sandbox = create(fast)
    assert fast.workspaces.made == {}
    assert fast.engine.volume_opts[str(sandbox.volume)] == {}


def test_a_workspace_larger_than_the_disk_is_refused_before_anything_is_made(fast: Fast) -> None:
    with pytest.raises(Invalid, match=r"resources\.disk_mb 16777216 is more than the disk"):
        create(fast, resources={"disk_mb": 1 << 24})
    assert fast.engine.containers_ == {}
    assert fast.workspaces.made == {}
