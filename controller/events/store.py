"""Sandbox events: lifecycle changes, output lines, actions, approvals, resource samples.

`record` queues an event on the session; it is published live and kept for history once the session commits
(see `events.bus`). `history` reads the kept ones.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from controller.events.bus import pending
from controller.models import Event

OUTPUT_KINDS = ("stdout", "stderr")


def record(session: Session, sandbox_id: str, kind: str, /, **data: Any) -> None:
    """Queue one event on the session; it is emitted after the session commits."""
    pending(session).append((sandbox_id, kind, data))


def history(
    session: Session,
    sandbox_id: str,
    *,
    kinds: tuple[str, ...] | None = None,
    after: int = 0,
    limit: int = 1000,
    tail: int | None = None,
) -> list[Event]:
    """Events of one sandbox in order: after the event id `after`, or the last `tail` of them."""
    query = select(Event).where(Event.sandbox_id == sandbox_id, col(Event.id) > after)
    if kinds:
        query = query.where(col(Event.kind).in_(kinds))
    if tail is not None:
        return list(reversed(session.exec(query.order_by(col(Event.id).desc()).limit(tail)).all()))
    return list(session.exec(query.order_by(col(Event.id)).limit(limit)))
