"""What the benchmarks share: a real controller of their own (API, gateway, worker) on a temporary home."""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import Controller, make_controller, remove_instance, running


@contextmanager
def bench_controller(redis_url: str, **settings: str) -> Iterator[Controller]:
    """Start a controller (no warm pool unless asked), and remove everything it made afterwards."""
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        ctl = make_controller(Path(tmp), redis_url, **{"FLEETGATE_POOL_SIZE": "0", **settings})
        try:
            with running(ctl, client):
                yield ctl
        finally:
            remove_instance(client, lambda inst: inst == "bench-raw")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (q=0.5 is the median)."""
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
