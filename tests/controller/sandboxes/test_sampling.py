"""Resource samples: CPU % between the sampler's own readings (pure), and real figures from a real engine."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlmodel import Session, select

from controller.config import Settings
from controller.db import engine_for, migrate
from controller.models import Sandbox, SandboxStatus
from controller.names import Keys, Task
from controller.sandboxes.hosts import Hosts, docker_engines
from controller.sandboxes.sampling import MIN_WINDOW_NS, cpu_percent, sample
from controller.sandboxes.spec import LABEL_INSTANCE
from controller.taskqueue import _schedule
from tests.conftest import Controller
from tests.controller.api.test_events import sse

S = 1_000_000_000


def test_the_first_reading_has_no_figure_and_is_kept() -> None:
    assert cpu_percent(None, {"cpu": 5 * S, "system": 100 * S}, 2) == (None, {"cpu": 5 * S, "system": 100 * S})


def test_cpu_is_a_share_of_one_core() -> None:
    before = {"cpu": 0, "system": 0}
    # 5 s of wall time on 2 cores is 10 s of host CPU time; the container used 2.5 s: half a core.
    pct, keep = cpu_percent(before, {"cpu": 5 * S // 2, "system": 10 * S}, 2)
    assert pct == 50.0
    assert keep == {"cpu": 5 * S // 2, "system": 10 * S, "pct": 50.0}
    assert cpu_percent(before, {"cpu": 10 * S, "system": 10 * S}, 2)[0] == 200.0  # both cores, flat out


def test_samples_too_close_together_repeat_the_last_figure_and_keep_the_older_reading() -> None:
    previous = {"cpu": 1 * S, "system": 10 * S, "pct": 37.5}
    close = {"cpu": 1 * S + 1000, "system": 10 * S + MIN_WINDOW_NS // 2}
    assert cpu_percent(previous, close, 2) == (37.5, previous)
    assert cpu_percent(previous, {"cpu": 1 * S, "system": 10 * S}, 2) == (37.5, previous)  # the same instant
    assert cpu_percent({"cpu": 1 * S, "system": 10 * S}, close, 2) == (None, {"cpu": 1 * S, "system": 10 * S})


def test_counters_that_went_backwards_start_over() -> None:
    restarted = {"cpu": 10, "system": 30 * S}
    assert cpu_percent({"cpu": 9 * S, "system": 20 * S, "pct": 80.0}, restarted, 2) == (None, restarted)


def test_periodic_work_that_waited_a_whole_period_expires_instead_of_piling_up() -> None:
    schedule = _schedule(Settings(sample_interval_s=5, reap_interval_s=7))
    assert {entry["task"] for entry in schedule.values()} >= {Task.SAMPLE.value, Task.REAP.value}
    for entry in schedule.values():
        assert entry["options"]["expires"] == entry["schedule"] > 0, entry


BURN = "while True:\n    pass\n"


def test_a_busy_sandbox_reports_its_cpu_memory_and_pids(controller: Controller, sandbox_factory: Any) -> None:
    cpus = 0.5
    sandbox = sandbox_factory(command=["python3", "-c", BURN], resources={"cpus": cpus, "memory_mb": 96})
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    for event in sse(controller, {"sandbox": sandbox["id"], "after": "0", "kinds": "resources"}, timeout=60):
        if event["data"]["cpu_pct"] is not None:
            samples.append(event["data"])
        if len(samples) == 2 or time.monotonic() > deadline:
            break
    assert len(samples) == 2, samples
    for data in samples:
        # Throttled by its CPU quota: about half a core, never the whole machine.
        assert cpus * 100 * 0.6 <= data["cpu_pct"] <= cpus * 100 * 1.2, samples
        assert data["mem_limit"] == 96 << 20
        assert 0 < data["mem_bytes"] < 96 << 20
        assert data["pids"] >= 2  # the runtime's supervisor and the burning loop


class Recorder:
    """Stands in for the event bus: keeps what would have been published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def submit(self, events: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        self.events.extend(events)


def test_one_sandbox_that_cannot_answer_costs_only_its_own_sample(
    tmp_path: Path, docker_client: Any, python_image: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path)
    migrate(settings)
    engine = engine_for(settings.db_url)
    hosts = Hosts("unix:///var/run/docker.sock", connect=docker_engines(timeout_s=10))
    hosts.add("away", f"unix://{tmp_path}/no-engine.sock")
    alive = docker_client.containers.run(
        python_image, ["sleep", "60"], detach=True, mem_limit="64m", labels={LABEL_INSTANCE: "test-sampling"}
    )
    try:
        with Session(engine) as session:
            for sandbox_id, host, container in [
                ("sb_alive0000000", "local", alive.id),
                ("sb_gone00000000", "local", "0" * 64),  # removed behind the controller's back
                ("sb_away00000000", "away", "1" * 64),  # on an engine that is not answering
            ]:
                session.add(Sandbox(id=sandbox_id, host=host, image=python_image, container_id=container,
                                    status=SandboxStatus.running, cpus=1, memory_mb=64, pids=64))  # fmt: skip
            session.commit()
            running = list(session.exec(select(Sandbox)))
        bus = Recorder()
        with caplog.at_level(logging.WARNING):
            count = sample(running, hosts=hosts, bus=bus, store=redis.Redis.from_url(redis_url), keys=Keys("t"))
        assert count == 1
        assert [(sandbox_id, kind) for sandbox_id, kind, _ in bus.events] == [("sb_alive0000000", "resources")]
        assert bus.events[0][2]["mem_limit"] == 64 << 20
        assert "no resource sample for 1 sandbox(es), e.g. sb_away00000000" in caplog.text
    finally:
        alive.remove(force=True)
