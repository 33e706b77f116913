"""PostgreSQL through FLEETGATE_DATABASE_URL: the same migrations, the same audit guarantees, the same flow.

./scripts/test installs and starts the distribution's PostgreSQL and gives the root user a role, so these tests
reach it over its unix socket. Each test gets a database of its own.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import Session, SQLModel

from controller.config import Settings
from controller.db import engine_for, migrate, schema_is_current, session_scope
from controller.models import Sandbox
from controller.oversight import audit
from tests.conftest import make_controller, running
from tests.controller.oversight.conftest import AgentRun, agent_script, decide, parsed, pending_for
from tests.controller.oversight.test_gate import add_sandbox, propose

SOCKET_DIR = "/var/run/postgresql"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"fleetgate_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"host={SOCKET_DIR} dbname=postgres", autocommit=True)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is not answering on {SOCKET_DIR} ({e}); run the tests with ./scripts/test")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://root@/{name}?host={SOCKET_DIR}"
    engine_for(f"postgresql+psycopg://root@/{name}?host={SOCKET_DIR}").dispose()
    with psycopg.connect(f"host={SOCKET_DIR} dbname=postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_on_postgresql_build_exactly_the_models_schema(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=pg_url)
    migrate(settings)
    migrate(settings)  # again: nothing to do
    engine = engine_for(pg_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    assert schema_is_current(engine)


def test_the_audit_chain_holds_under_concurrent_appends_and_catches_edits(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=pg_url)
    migrate(settings)
    engine = engine_for(pg_url)

    def appender(n: int) -> None:
        for i in range(25):
            with session_scope(engine) as session:
                audit.append(session, actor=f"writer{n}", event="test.appended", subject=f"n:{i}", i=i)

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope(engine) as session:
        result = audit.verify(session)
    assert result.ok, result.problems
    assert result.checked == 100
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit SET actor = 'nobody' WHERE id = 50"))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit DISABLE TRIGGER audit_append_only"))
        conn.execute(text("UPDATE audit SET actor = 'nobody' WHERE id = 50"))
    with session_scope(engine) as session:
        problems = audit.verify(session).problems
    assert [p.entry_id for p in problems] == [50]


def test_denials_in_a_row_are_counted_exactly_when_one_sandbox_calls_at_once(pg_url: str, tmp_path: Path) -> None:
    migrate(Settings(home=tmp_path, database_url=pg_url))
    engine = engine_for(pg_url)
    sandbox_id = add_sandbox(engine, 1, policy={"default": "deny"})

    def agent() -> None:
        for _ in range(20):
            propose(engine, 1, "rm")

    threads = [threading.Thread(target=agent) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as session:
        sandbox = session.get(Sandbox, sandbox_id)
        assert sandbox is not None
        assert sandbox.consecutive_denials == 80


def test_a_controller_on_postgresql_runs_the_oversight_flow(
    pg_url: str, tmp_path: Path, redis_url: str, docker_client: Any, python_image: str
) -> None:
    ctl = make_controller(tmp_path, "redis://127.0.0.1:6379/7", FLEETGATE_DATABASE_URL=pg_url, FLEETGATE_POOL_SIZE="0")
    with running(ctl, docker_client), ctl.http("operator") as operator, ctl.http("admin") as admin:
        policy = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}
        sandbox = operator.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": policy})
        assert sandbox.status_code == 201, sandbox.text
        sandbox_id = sandbox.json()["id"]
        run = AgentRun(admin, sandbox_id, agent_script("say(sdk.gate('deploy', {'v': 1}))\n")).start()
        item = pending_for(admin, sandbox_id)
        assert decide(admin, item["id"], decision="approve", args={"v": 2}).status_code == 200
        assert parsed(run.lines()) == [[{"v": 2}]]
        assert admin.get("/api/v1/audit/verify").json()["ok"] is True
        assert admin.delete(f"/api/v1/sandboxes/{sandbox_id}").status_code == 200
