"""Sandbox events kept in the database: lifecycle changes and output lines, for history and `logs`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from controller.models import Event

OUTPUT_KINDS = ("stdout", "stderr")


def record(session: Session, sandbox_id: str, kind: str, **data: Any) -> Event:
    """Add one event to the session (the caller commits)."""
    event = Event(sandbox_id=sandbox_id, kind=kind, data=data)
    session.add(event)
    return event


def record_many(session: Session, sandbox_id: str, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
    events = [Event(sandbox_id=sandbox_id, kind=kind, data=data) for kind, data in items]
    session.add_all(events)
    return len(events)


def history(
    session: Session,
    sandbox_id: str,
    *,
    kinds: tuple[str, ...] | None = None,
    after: int = 0,
    limit: int = 1000,
) -> list[Event]:
    """Events of one sandbox in order, after the event id `after`."""
    query = select(Event).where(Event.sandbox_id == sandbox_id, col(Event.id) > after)
    if kinds:
        query = query.where(col(Event.kind).in_(kinds))
    return list(session.exec(query.order_by(col(Event.id)).limit(limit)))
