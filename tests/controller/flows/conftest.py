"""The fast tier: the flows on a real SQLite database with an in-memory engine, and no Redis or Celery.

What would leave the process is recorded instead: tasks queued, agents woken. The integration tier proves the same
flows on the real engine, Redis and worker; here a rule about sandboxes or decisions costs milliseconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from controller.auth import ensure_user
from controller.config import Settings
from controller.db import engine_for, migrate
from controller.fleet import Fleet
from controller.models import Event, Role, User
from controller.names import Task
from controller.oversight.models import AuditEntry
from controller.sandboxes.memory import MemoryEngine, MemoryWorkspaces


@dataclass
class RecordedTasks:
    sent: list[tuple[Task, tuple[Any, ...]]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    def send(self, task: Task, args: Sequence[Any], *, delay_s: float = 0.0) -> str:
        self.sent.append((task, tuple(args)))
        self.delays.append(delay_s)
        return f"task-{len(self.sent)}"

    def state(self, task_id: str) -> dict[str, Any]:
        return {"id": task_id, "state": "SUCCESS", "result": None, "error": None}

    def of(self, task: Task) -> list[tuple[Any, ...]]:
        return [args for sent, args in self.sent if sent == task]


@dataclass
class RecordedWakes:
    keys: list[str] = field(default_factory=list)

    def publish(self, items: Iterable[str]) -> None:
        self.keys.extend(items)


@dataclass
class Fast:
    """A fleet on an in-memory engine, with what it sent out recorded."""

    fleet: Fleet
    engine: MemoryEngine
    tasks: RecordedTasks
    wakes: RecordedWakes
    settings: Settings
    workspaces: MemoryWorkspaces

    def user(self, name: str = "olivia", role: Role = Role.operator) -> User:
        with self.fleet.tx.write() as t:
            return ensure_user(session=t.session, name=name, role=role)

    def audit(self, subject: str | None = None) -> list[AuditEntry]:
        with Session(self.fleet.db) as session:
            query = select(AuditEntry).order_by(col(AuditEntry.id))
            if subject is not None:
                query = query.where(AuditEntry.subject == subject)
            return list(session.exec(query))

    def events(self, sandbox_id: str, kind: str = "lifecycle") -> list[dict[str, Any]]:
        with Session(self.fleet.db) as session:
            query = select(Event).where(Event.sandbox_id == sandbox_id, Event.kind == kind).order_by(col(Event.id))
            return [e.data for e in session.exec(query)]

    def row(self, model: Any, key: Any) -> Any:
        with Session(self.fleet.db) as session:
            return session.get(model, key)


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database at the newest migration, made once; each test starts from a copy of it."""
    home = tmp_path_factory.mktemp("migrated")
    settings = Settings(home=home)
    migrate(settings)
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:  # all of it in the database file, none left in the WAL
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return home / "fleetgate.db"


@pytest.fixture
def fast(tmp_path: Path, migrated: Path) -> Iterator[Fast]:
    settings = Settings(home=tmp_path / "home", instance="fast", docker_url="memory://local")
    settings.ensure_dirs()
    shutil.copyfile(migrated, settings.home / "fleetgate.db")
    engine, tasks, wakes, workspaces = MemoryEngine(), RecordedTasks(), RecordedWakes(), MemoryWorkspaces()
    fleet = Fleet(settings, tasks=tasks, wake=wakes, connect=lambda name, url: engine, workspaces=workspaces)
    yield Fast(fleet, engine, tasks, wakes, settings, workspaces)
    fleet.db.dispose()
