"""Schema management (the migrations build exactly the models' schema, applying them again is a no-op), stored
times, and where SQLite's WAL checkpoints happen."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from controller.config import Settings
from controller.db import Checkpointer, alembic_config, engine_for, make_engine, migrate, schema_is_current
from controller.models import Event
from tests.conftest import wait_for


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    migrate(settings)
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    assert schema_is_current(engine)


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    migrate(settings)
    before = (tmp_path / "fleetgate.db").read_bytes()
    migrate(settings)
    assert schema_is_current(engine_for(settings.db_url))
    assert len((tmp_path / "fleetgate.db").read_bytes()) == len(before)


def test_upgrading_the_notification_outbox_keeps_only_the_work_still_to_do(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    engine = engine_for(settings.db_url)
    with engine.begin() as conn:
        config = alembic_config(settings.db_url)
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        for approval_id, planned in ((1, True), (2, False), (3, True)):
            conn.exec_driver_sql(
                "INSERT INTO notification (approval_id, event, planned, created_at) VALUES (?, ?, ?, ?)",
                (approval_id, "approval.requested", planned, "2026-11-30 12:00:00.000000"),
            )
    migrate(settings)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT approval_id FROM notification").scalars().all() == [2]


def test_times_come_back_aware_and_in_utc(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    migrate(settings)
    paris = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine_for(settings.db_url)) as session:
        session.add(Event(sandbox_id="sb_0", kind="t", data={}, created_at=paris))
        session.commit()
        back = session.exec(select(Event)).one().created_at
    assert back == paris
    assert back.tzinfo == UTC


def test_naive_times_are_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    migrate(settings)
    with Session(engine_for(settings.db_url)) as session:
        session.add(Event(sandbox_id="sb_0", kind="t", data={}, created_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive datetimes"):
            session.commit()


FILL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
    "INSERT INTO filler SELECT randomblob(4000) FROM n"
)


def _filled(path: Path, *, checkpoint_every_s: float | None) -> tuple[int, int]:
    """Write about 32 MB in 80 transactions, with a checkpointer (or SQLite's own checkpoints, for None); then
    (the database file's size once the checkpoints have caught up, the WAL file's size). The WAL's size is its
    high-water mark: it starts again from the beginning once a checkpoint has caught up."""
    engine = make_engine(f"sqlite:///{path}")
    checkpoints = None
    if checkpoint_every_s is not None:
        checkpoints = Checkpointer(engine, interval_s=checkpoint_every_s, backstop_pages=1_000_000)
        checkpoints.start()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE filler (x BLOB)")
        with engine.connect() as conn:
            expected = 1000 if checkpoint_every_s is None else 1_000_000
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == expected
        for _ in range(80):
            with engine.begin() as conn:
                conn.exec_driver_sql(FILL)
            time.sleep(0.02)
        if checkpoint_every_s is not None and checkpoint_every_s < 1:
            wait_for(lambda: path.stat().st_size > 30 << 20, timeout=30, interval=0.05, what="the last checkpoint")
        return path.stat().st_size, Path(f"{path}-wal").stat().st_size
    finally:
        if checkpoints is not None:
            checkpoints.stop()
        engine.dispose()


def test_the_checkpointer_thread_copies_the_wal_into_the_database_and_keeps_it_smaller(tmp_path: Path) -> None:
    database, wal = _filled(tmp_path / "with.db", checkpoint_every_s=0.05)
    assert database > 30 << 20
    assert wal < 30 << 20  # typically 5 to 15 MB, depending on the machine's load


def test_commits_leave_checkpoints_to_the_thread_and_only_the_backstop_would_bound_the_wal(tmp_path: Path) -> None:
    database, wal = _filled(tmp_path / "stalled.db", checkpoint_every_s=3600)
    assert database < 1 << 20
    assert wal > 30 << 20
    assert _filled(tmp_path / "default.db", checkpoint_every_s=None)[1] < 12 << 20  # SQLite's own, in commits
