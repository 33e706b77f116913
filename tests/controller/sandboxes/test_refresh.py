"""A live status refresh against the database: it never overwrites a state saved after its row was read."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from controller.config import Settings
from controller.db import engine_for, migrate, write_session
from controller.models import Sandbox, SandboxStatus
from controller.sandboxes.hosts import DockerHosts
from controller.sandboxes.service import SandboxService


def service_on(tmp_path: Path) -> tuple[SandboxService, Settings]:
    settings = Settings(home=tmp_path)
    migrate(settings)
    hosts = DockerHosts(f"unix://{tmp_path}/no.sock")  # never asked: the engine's answer is given to _refresh
    return SandboxService(settings=settings, hosts=hosts, instance="testrefresh"), settings


def add_running(settings: Settings, sandbox_id: str) -> None:
    with write_session(engine_for(settings.db_url)) as session:
        session.add(Sandbox(id=sandbox_id, image="x", cpus=1, memory_mb=64, pids=64, status=SandboxStatus.running))


def read(session: Session, sandbox_id: str) -> Sandbox:
    """The row as a request reads it: loaded, then the read transaction ended before the engine is asked."""
    row = session.get(Sandbox, sandbox_id)
    session.commit()
    assert row is not None
    return row


def test_a_stale_reading_does_not_turn_a_removed_sandbox_into_gone(tmp_path: Path) -> None:
    service, settings = service_on(tmp_path)
    add_running(settings, "sb_00000000000a")
    engine = engine_for(settings.db_url)
    with Session(engine, expire_on_commit=False) as reader:
        seen = read(reader, "sb_00000000000a")
        assert seen.status == SandboxStatus.running
        # Meanwhile the reaper removes it (container first, then the row) ...
        with write_session(engine) as reaper:
            read(reaper, "sb_00000000000a").status = SandboxStatus.removed
        # ... and the reader, having found no container, refreshes from what it read before.
        service._refresh(reader, seen, None)
        assert seen.status == SandboxStatus.removed  # the reader now holds what was saved
    with Session(engine) as check:
        assert read(check, "sb_00000000000a").status == SandboxStatus.removed


def test_a_reading_that_is_still_current_is_saved(tmp_path: Path) -> None:
    service, settings = service_on(tmp_path)
    add_running(settings, "sb_00000000000b")
    engine = engine_for(settings.db_url)
    with Session(engine, expire_on_commit=False) as reader:
        service._refresh(reader, read(reader, "sb_00000000000b"), {"Status": "exited", "ExitCode": 3})
    with Session(engine) as check:
        row = read(check, "sb_00000000000b")
        assert (row.status, row.exit_code) == (SandboxStatus.exited, 3)
        assert row.finished_at is not None
