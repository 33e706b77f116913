"""Database engine, sessions and the migrations hook (Alembic, applied on start)."""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from controller.config import Settings
from controller.errors import Invalid, Unavailable

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_OPTION = "fleetgate_write"


def dump_json(value: Any) -> str:
    """JSON columns are written with orjson (events are stored by the thousand each second)."""
    return orjson.dumps(value, default=str).decode()


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if not url.startswith("sqlite"):
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            json_serializer=dump_json,
            json_deserializer=orjson.loads,
        )
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=dump_json,
        json_deserializer=orjson.loads,
    )

    @sa.event.listens_for(engine, "connect")
    def _tune_sqlite(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # A write transaction takes SQLite's write lock up front, so it waits its turn (busy_timeout) instead of
        # failing when another process commits between its reads and its first write.
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)


class Checkpointer:
    """Moves SQLite's WAL checkpoints off the request path, onto a thread of their own.

    By default the commit that takes the WAL past 1,000 pages copies them into the database file and syncs it,
    and that one request waits several milliseconds (the gate's p99 showed it). Here the
    engine's own commits only do so past `backstop_pages` (if this thread ever falls behind), and every
    `interval_s` this thread runs a passive checkpoint, which waits for nobody. Once a checkpoint has caught up,
    the next commit starts the WAL from the beginning again, so it stays small.
    """

    def __init__(self, engine: Engine, *, interval_s: float = 0.25, backstop_pages: int = 20_000) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.backstop_pages = backstop_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.engine.dialect.name != "sqlite" or self._thread is not None:
            return
        sa.event.listen(self.engine, "connect", self._backstop)
        self.engine.dispose()  # connections opened before now checkpoint by themselves: close them
        self._thread = threading.Thread(target=self._run, name="fleetgate-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            sa.event.remove(self.engine, "connect", self._backstop)
            self._thread = None

    def _backstop(self, dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={int(self.backstop_pages)}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except sa.exc.SQLAlchemyError as e:  # the next round tries again; the backstop bounds the WAL
                log.warning("WAL checkpoint failed: %s", e)


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error; a writing one takes the lock up front.

    SQLite rule in this code base: a transaction that reads and then writes must hold the write lock from its
    start (or it fails when another process commits in between), and no transaction stays open across a slow
    call to a Docker engine (the flows read, end the read, call the engine, then write: `flows.unit`).
    """
    bind = engine.execution_options(**{WRITE_OPTION: True}) if write else engine
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; requests that may change things take the write lock for each transaction."""
    engine: Engine = request.app.state.engine
    changes = request.method not in ("GET", "HEAD", "OPTIONS")
    with Session(engine.execution_options(**{WRITE_OPTION: changes}), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(settings: Settings) -> None:
    """Bring the schema to the newest revision; a file lock keeps two starting processes from racing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        engine = engine_for(settings.db_url)
        with engine.begin() as conn:
            config = alembic_config(settings.db_url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def existing_engine(settings: Settings) -> Engine:
    """The engine of a database fleetgate made and migrated, for commands that read it directly (`audit verify`):
    a wrong FLEETGATE_HOME or database URL is an error, never a new empty database that verifies as intact."""
    url = sa.engine.make_url(settings.db_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise Invalid(
            f"there is no fleetgate database at {url.database} (FLEETGATE_HOME={settings.home}); "
            "point FLEETGATE_HOME or FLEETGATE_DATABASE_URL at the install, or create one with `fleetgate init`"
        )
    engine = engine_for(settings.db_url)
    try:
        current = schema_is_current(engine)
    except sa.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise Unavailable(f"cannot read the database at {shown}: {reason}") from e
    if not current:
        raise Invalid(f"the database at {shown} is not at this version's schema; `fleetgate init` migrates it")
    return engine


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
