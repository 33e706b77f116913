"""The effect runner: agents are woken before anything slower, and nothing it does can undo a committed decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from controller.effects import Enqueue, Pause, Resume, Stop, Wake, notify
from controller.errors import RedisUnavailable, SandboxNotFound
from controller.flows.effects import EffectRunner
from controller.names import Task


class Journal:
    """Every collaborator of the runner at once, writing down what it was asked, in order."""

    def __init__(self, *, tasks_fail: bool = False, lifecycle_fails: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.tasks_fail = tasks_fail
        self.lifecycle_fails = lifecycle_fails

    def send(self, task: Task, args: Sequence[Any], *, delay_s: float = 0.0) -> str:
        self.calls.append(("send", (task, tuple(args))))
        if self.tasks_fail:
            raise RedisUnavailable("redis://127.0.0.1:1", "connection refused")
        return "id"

    def state(self, task_id: str) -> dict[str, Any]:
        return {}

    def publish(self, items: Any) -> None:
        self.calls.append(("wake", list(items)))

    def _change(self, verb: str, sandbox_id: str, reason: str) -> None:
        self.calls.append((verb, (sandbox_id, reason)))
        if self.lifecycle_fails:
            raise SandboxNotFound(sandbox_id)

    def pause(self, sandbox_id: str, *, actor: str, reason: str) -> None:
        self._change("pause", sandbox_id, reason)

    def resume(self, sandbox_id: str, *, actor: str, reason: str) -> None:
        self._change("resume", sandbox_id, reason)

    def stop(self, sandbox_id: str, *, actor: str, reason: str) -> None:
        self._change("stop", sandbox_id, reason)


def runner(journal: Journal) -> EffectRunner:
    return EffectRunner(tasks=journal, wake=journal, lifecycle=journal)


def test_agents_are_woken_first_then_work_is_queued_then_sandboxes_change() -> None:
    journal = Journal()
    runner(journal).apply(
        [Stop("sb_1", "denied"), notify(7, "approval.decided"), Wake(("approval:7", "action:3")), Resume("sb_2", "ok")]
    )
    assert [verb for verb, _ in journal.calls] == ["wake", "send", "stop", "resume"]
    assert journal.calls[0] == ("wake", ["approval:7", "action:3"])
    assert journal.calls[1] == ("send", (Task.NOTIFY, (7, "approval.decided")))


def test_the_same_effect_twice_is_done_once() -> None:
    journal = Journal()
    runner(journal).apply([Pause("sb_1", "escalated"), Pause("sb_1", "escalated"), Enqueue(Task.POOL_REFILL, (1,))] * 2)
    assert [verb for verb, _ in journal.calls] == ["send", "pause"]


def test_failures_are_logged_and_the_rest_still_happens(caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(tasks_fail=True, lifecycle_fails=True)
    runner(journal).apply([notify(1, "approval.requested"), Pause("sb_9", "escalated"), Wake(("approval:1",))])
    assert [verb for verb, _ in journal.calls] == ["wake", "send", "pause"]
    assert "could not queue fleetgate.notify.approval[1, 'approval.requested'] now (its sweep will)" in caplog.text
    assert "could not pause sandbox sb_9 after a decision" in caplog.text
