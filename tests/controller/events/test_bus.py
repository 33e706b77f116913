"""The event bus against a real Redis and a real SQLite database: what it publishes, keeps and counts, and when."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlmodel import Session, col, select

from controller.config import Settings
from controller.db import engine_for, migrate
from controller.events.bus import EventBus
from controller.models import Event
from controller.names import Keys
from tests.conftest import wait_for

INSTANCE = "bus-test"
KEYS = Keys(INSTANCE)
SANDBOX = "sb_0000000000b5"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.delete(KEYS.fleet_stream, KEYS.sandbox_stream(SANDBOX), KEYS.events_total)


@pytest.fixture
def bus(client: redis.Redis, tmp_path: Path) -> Iterator[EventBus]:
    settings = Settings(home=tmp_path)
    migrate(settings)
    engine = engine_for(settings.db_url)
    yield EventBus(client, engine, KEYS, interval_s=1.0)
    engine.dispose()


def _event(n: int) -> tuple[str, str, dict[str, Any]]:
    return (SANDBOX, "log", {"n": n})


def test_a_quiet_streams_event_goes_out_at_once_and_a_busy_one_in_a_batch_per_interval(
    bus: EventBus, client: redis.Redis
) -> None:
    batches: list[int] = []
    publish = bus.publish

    def counted(items: Any) -> int:
        batch = list(items)
        batches.append(len(batch))
        return publish(batch)

    bus.publish = counted  # type: ignore[method-assign]
    started = time.monotonic()
    bus.submit([_event(0)])
    wait_for(lambda: client.xlen(KEYS.fleet_stream) == 1, timeout=5, interval=0.01)
    assert time.monotonic() - started < 0.5, "the first event after a quiet spell waited for the interval"
    for n in range(1, 11):  # a steady trickle within the interval: held back, then published together
        bus.submit([_event(n)])
        time.sleep(0.02)
    assert client.xlen(KEYS.fleet_stream) == 1
    assert bus.flush(timeout=5)
    assert batches == [1, 10]
    assert client.xlen(KEYS.sandbox_stream(SANDBOX)) == 11
    assert int(client.get(KEYS.events_total) or 0) == 11


def test_kept_events_carry_the_ids_they_were_published_with(bus: EventBus, client: redis.Redis, redis_url: str) -> None:
    bus.submit([_event(n) for n in range(5)])
    assert bus.flush(timeout=5)
    reader = redis.Redis.from_url(redis_url, decode_responses=True)
    published = [entry_id for entry_id, _ in reader.xrange(KEYS.fleet_stream) or []]
    with Session(bus.engine) as session:
        kept = session.exec(select(Event).where(Event.sandbox_id == SANDBOX).order_by(col(Event.id))).all()
    assert [e.stream_id for e in kept] == published
    assert [e.data["n"] for e in kept] == list(range(5))
