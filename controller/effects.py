"""After-commit effects: what a use case needs done outside the database once its transaction has committed.

Domain code returns these as plain values (a decision that resumes an escalated sandbox returns `Resume`); the
flow that owns the transaction commits and then hands them to `flows.effects.EffectRunner`, the one place that
talks to Celery, the wake-up channel and the sandbox lifecycle. Nothing is done for a transaction that rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.names import Task


@dataclass(frozen=True)
class Enqueue:
    """Hand slow work to the worker. Every kind of task also has a sweep, so one that cannot be queued is late,
    never lost."""

    task: Task
    args: tuple[Any, ...] = field(default=())
    delay_s: float = 0.0


@dataclass(frozen=True)
class Wake:
    """Tell agents waiting on these items (`approval:12`, `action:34`) to read them again."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Pause:
    sandbox_id: str
    reason: str


@dataclass(frozen=True)
class Resume:
    sandbox_id: str
    reason: str


@dataclass(frozen=True)
class Stop:
    sandbox_id: str
    reason: str


Effect = Enqueue | Wake | Pause | Resume | Stop


def notify(approval_id: int, event: str) -> Enqueue:
    """Plan the webhook deliveries of an approval event (its outbox row was written in the same transaction)."""
    return Enqueue(Task.NOTIFY, (approval_id, event))


def run_broker(action_id: int) -> Enqueue:
    """Carry out an allowed brokered action on the controller side."""
    return Enqueue(Task.RUN_BROKER, (action_id,))


def refill_pool(template_id: int, delay_s: float = 0.0) -> Enqueue:
    """Top a template's warm pool up again; after a claim, a moment later, so that making the next sandbox does not
    compete for the CPU with the first command of the one just handed out."""
    return Enqueue(Task.POOL_REFILL, (template_id,), delay_s)
