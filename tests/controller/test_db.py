"""Schema management: the migrations build exactly the models' schema, and applying them again is a no-op."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from controller.config import Settings
from controller.db import engine_for, migrate, schema_is_current
from controller.models import Event


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
