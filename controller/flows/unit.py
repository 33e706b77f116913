"""A use case's transaction: one session under the write lock, with its events and effects let out after commit.

    with tx.write() as t:                       # BEGIN IMMEDIATE (SQLite) / a plain transaction (PostgreSQL)
        lifecycle.move(t.session, sandbox, ...)  # domain functions: they stage events, never commit
        audit.append(t.session, ...)             # the audit entry, in the same transaction
        t.effects += decided.effects             # what to do outside the database
    # committed: the events went to the event sink, the effects to the runner; on an error, neither

No transaction here stays open across a call to a container engine: a flow reads, ends the read, calls the engine,
then writes what came of it (by compare-and-set where the row may have moved meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session

from controller.db import session_scope
from controller.effects import Effect
from controller.events.bus import EventSink
from controller.events.store import open_for_events, take_events

Apply = Callable[[Sequence[Effect]], None]


@dataclass
class Tx:
    session: Session
    effects: list[Effect] = field(default_factory=list)


class Transactions:
    """Opens the flows' transactions on one database, for one event sink and one effect runner."""

    def __init__(self, db: Engine, events: EventSink, apply: Apply | None = None) -> None:
        self.db = db
        self.events = events
        self.apply = apply  # set by the composition root once the runner exists (it needs the flows itself)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction; committed at the end of the block, rolled back (and nothing let out) on an error."""
        with session_scope(self.db, write=True) as session:
            open_for_events(session)
            tx = Tx(session)
            yield tx
        events = take_events(session)
        if events:
            self.events.submit(events)
        if tx.effects and self.apply is not None:
            self.apply(tx.effects)

    def after(self, *effects: Effect) -> None:
        """Effects of work committed earlier (in several transactions, with engine calls between them)."""
        if effects and self.apply is not None:
            self.apply(effects)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; its transaction ends with the block, before any slow call that follows."""
        with Session(self.db, expire_on_commit=False) as session:
            yield session
