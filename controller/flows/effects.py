"""Carrying out after-commit effects: the one place that queues worker tasks, wakes waiting agents, and pauses,
resumes or stops a sandbox because of a decision.

Every effect is best effort, because the decision that caused it is already committed and stands: a task that
cannot be queued is found by the worker's sweeps, an agent not woken finds its answer by polling, a sandbox that
cannot be paused is logged (it may be gone already).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from controller.effects import Effect, Enqueue, Pause, Resume, Stop, Wake
from controller.errors import FleetgateError
from controller.names import Task

log = logging.getLogger(__name__)
SYSTEM = "system"


class TaskQueue(Protocol):
    """Where slow work goes (Celery in production); `send` raises `Unavailable` when it cannot be queued."""

    def send(self, task: Task, args: Sequence[Any], *, delay_s: float = 0.0) -> str: ...

    def state(self, task_id: str) -> dict[str, Any]:
        """Where a task whose result is kept stands: id, state, result, error."""
        ...


class WakePublisher(Protocol):
    def publish(self, items: Iterable[str]) -> None: ...


class Lifecycle(Protocol):
    """What effects ask of the sandbox flows."""

    def pause(self, sandbox_id: str, *, actor: str, reason: str) -> object: ...

    def resume(self, sandbox_id: str, *, actor: str, reason: str) -> object: ...

    def stop(self, sandbox_id: str, *, actor: str, reason: str) -> object: ...


class EffectRunner:
    def __init__(self, *, tasks: TaskQueue, wake: WakePublisher, lifecycle: Lifecycle) -> None:
        self.tasks = tasks
        self.wake = wake
        self.lifecycle = lifecycle

    def apply(self, effects: Sequence[Effect]) -> None:
        """Wake agents first (they are waiting), then queue work, then change sandboxes (engine calls, slowest)."""
        unique = list(dict.fromkeys(effects))
        keys = [key for effect in unique if isinstance(effect, Wake) for key in effect.keys]
        if keys:
            self.wake.publish(keys)
        for effect in unique:
            if isinstance(effect, Enqueue):
                self._enqueue(effect)
        for effect in unique:
            if isinstance(effect, Pause | Resume | Stop):
                self._change(effect)

    def _enqueue(self, effect: Enqueue) -> None:
        try:
            self.tasks.send(effect.task, effect.args, delay_s=effect.delay_s)
        except FleetgateError as e:
            log.warning(
                "could not queue %s%s now (its sweep will): %s", effect.task.value, list(effect.args), e.message
            )

    def _change(self, effect: Pause | Resume | Stop) -> None:
        change = {Pause: self.lifecycle.pause, Resume: self.lifecycle.resume, Stop: self.lifecycle.stop}[type(effect)]
        verb = type(effect).__name__.lower()
        try:
            change(effect.sandbox_id, actor=SYSTEM, reason=effect.reason)
        except FleetgateError as e:  # the decision stands; the sandbox may already be gone
            log.warning("could not %s sandbox %s after a decision: %s", verb, effect.sandbox_id, e.message)
