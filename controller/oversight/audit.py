"""The audit log: append-only and hash-chained, so an edited or deleted row is found and named.

Each entry's hash covers its id, time, actor, event, subject, data and the previous entry's hash. Appends run in
a write transaction (`BEGIN IMMEDIATE` on SQLite; on PostgreSQL `append` takes an advisory lock), so the chain has
one head at a time. Ids follow one another, so a row deleted before the newest shows as a gap even where the
chain is re-stitched.

Deleting the newest rows leaves no gap: the chain alone cannot tell. A head printed by an earlier verification
(`ID:HASH`), kept somewhere the database's editor cannot reach, can: verifying against it finds the log shorter
than it was, or rewritten from that row on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlmodel import Session, col, select

from controller.errors import Invalid
from controller.models import utcnow
from controller.oversight.models import AuditEntry

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x61756469  # "audi"


_audit: sa.Table = AuditEntry.__table__  # type: ignore[attr-defined]
_HEAD = sa.select(_audit.c.id, _audit.c.hash).order_by(_audit.c.id.desc()).limit(1)
_INSERT = sa.insert(_audit)
_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


def _body(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "created_at": entry.created_at,
        "actor": entry.actor,
        "event": entry.event,
        "subject": entry.subject,
        "data": entry.data,
    }


def _digest(body: dict[str, Any], prev_hash: str) -> str:
    """The hash of an entry's content and the hash before it."""
    plain = {**body, "created_at": body["created_at"].isoformat(), "prev": prev_hash}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def entry_hash(entry: AuditEntry, prev_hash: str) -> str:
    return _digest(_body(entry), prev_hash)


def append(session: Session, *, actor: str, event: str, subject: str = "", **data: Any) -> None:
    """Add one entry at the head of the chain (in the caller's write transaction).

    Every action passes here, so the statements are built once and run on the session's connection.
    """
    session.flush()  # whatever the caller added goes first, as it happened first
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"k": _PG_AUDIT_LOCK})
    head = conn.execute(_HEAD).first()
    # The caller holds the write lock, so the next id is ours to take; the hash can cover it before the insert.
    prev_hash = head.hash if head else GENESIS
    body = {
        "id": head.id + 1 if head else 1,
        "created_at": utcnow(),
        "actor": actor,
        "event": event,
        "subject": subject,
        "data": _jsonable(data),
    }
    conn.execute(_INSERT, {**body, "prev_hash": prev_hash, "hash": _digest(body, prev_hash)})


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


@dataclass
class Problem:
    entry_id: int
    what: str

    def __str__(self) -> str:
        return f"audit row {self.entry_id}: {self.what}"


@dataclass(frozen=True)
class Head:
    """A chain head as verification prints it, `ID:HASH` (a prefix of at least 12 hex digits will do)."""

    entry_id: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Head:
        found = re.fullmatch(r"\s*(\d{1,18}):([0-9a-fA-F]{12,64})\s*", text)
        if not found or int(found[1]) < 1:
            example = "42:9f2c0e1d7a3b5c68"
            raise Invalid(f"{text[:80]!r} is not an audit head; give it as verify printed it, e.g. {example}")
        return cls(int(found[1]), found[2].lower())

    def __str__(self) -> str:
        return f"{self.entry_id}:{self.hash[:16]}"


@dataclass
class Verification:
    ok: bool
    checked: int
    problems: list[Problem]
    head: str
    head_id: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": self.head,
            "head_id": self.head_id,
            "problems": [{"id": p.entry_id, "problem": p.what} for p in self.problems],
        }


def _rows(session: Session, batch: int = 2000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.exec(
            select(AuditEntry).where(col(AuditEntry.id) > last).order_by(col(AuditEntry.id)).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id or last


def verify(session: Session, *, limit: int = 20, since: Head | None = None) -> Verification:
    """Walk the whole chain; name every edited row and every missing one (up to `limit` problems).

    With `since`, a head recorded earlier, the log must still hold that row unchanged: rows deleted from the end
    (which leave no gap) are found too.
    """
    problems: list[Problem] = []
    prev_hash, prev_id, checked = GENESIS, 0, 0
    for entry in _rows(session):
        assert entry.id is not None
        checked += 1
        if entry.id != prev_id + 1:
            missing = f"{prev_id + 1}" if entry.id == prev_id + 2 else f"{prev_id + 1}..{entry.id - 1}"
            problems.append(Problem(entry.id, f"rows {missing} before it were deleted"))
        elif entry.prev_hash != prev_hash:
            problems.append(Problem(entry.id, "its link to the previous row was changed"))
        if entry_hash(entry, entry.prev_hash) != entry.hash:
            problems.append(Problem(entry.id, "its content was changed after it was written"))
        if since and entry.id == since.entry_id and not entry.hash.startswith(since.hash):
            problems.append(Problem(entry.id, f"it is not the row recorded as head {since}: the log was rewritten"))
        prev_hash, prev_id = entry.hash, entry.id
        if len(problems) >= limit:
            break
    else:
        if since and prev_id < since.entry_id:
            what = f"the log ends at row {prev_id}, but its head was {since}: rows were deleted from the end"
            problems.append(Problem(since.entry_id, what))
    return Verification(ok=not problems, checked=checked, problems=problems, head=prev_hash, head_id=prev_id)


def export(session: Session) -> Iterator[str]:
    """Every entry as one JSON line, oldest first."""
    for entry in _rows(session):
        body = {**_body(entry), "created_at": entry.created_at.isoformat()}
        yield json.dumps({**body, "prev_hash": entry.prev_hash, "hash": entry.hash}, sort_keys=True)
