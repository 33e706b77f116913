"""Sandbox events on the session: lifecycle changes, actions, approvals; and reading them back as history.

`emit` stages an event on the caller's session. Only a flow's transaction (`flows.unit`) takes events: it opens the
session for them, and after the commit hands them to the process's event sink. Emitting on any other session is a
programming error, raised at once rather than losing the event quietly.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from controller.events.bus import EventItem
from controller.models import Event

_STAGED = "fleetgate_events"


def open_for_events(session: Session) -> None:
    """Let `emit` stage events on this session (the transaction that owns it publishes them after commit)."""
    session.info[_STAGED] = []


def take_events(session: Session) -> list[EventItem]:
    """The events staged so far, handed over once (an empty list for a session that staged none)."""
    items: list[EventItem] = session.info.get(_STAGED) or []
    session.info[_STAGED] = []
    return items


def emit(session: Session, sandbox_id: str, kind: str, /, **data: Any) -> None:
    """Stage one event; it goes out once the session's transaction commits, and never if it rolls back."""
    staged = session.info.get(_STAGED)
    if staged is None:
        raise RuntimeError("events are emitted inside a flow's write transaction (flows.unit), not a bare session")
    staged.append((sandbox_id, str(kind), data))


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
