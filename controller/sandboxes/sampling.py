"""Resource samples of running sandboxes from the engine's stats: CPU %, memory, pids.

One-shot stats (one request per container, no two-second wait) carry no previous CPU reading, so the sampler
keeps each container's last reading in Redis and computes CPU % between its own samples.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import docker.errors
import redis
from sqlmodel import Session, select

from controller.events.bus import EventBus
from controller.models import Sandbox, SandboxStatus
from controller.sandboxes.hosts import DockerHost, DockerHosts

log = logging.getLogger(__name__)


def cpu_percent(previous: dict[str, int] | None, current: dict[str, int], ncpu: int) -> float | None:
    """CPU use between two readings, as % of one core (so 2 busy cores read 200)."""
    if not previous:
        return None
    used = current["cpu"] - previous["cpu"]
    elapsed = current["system"] - previous["system"]
    if used < 0 or elapsed <= 0:
        return None
    return round(used / elapsed * ncpu * 100, 1)


def reading(stats: dict[str, Any]) -> dict[str, int]:
    cpu = stats.get("cpu_stats") or {}
    return {
        "cpu": int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
        "system": int(cpu.get("system_cpu_usage") or 0),
    }


def _stats(host: DockerHost, container_id: str) -> dict[str, Any]:
    stats: dict[str, Any] = host.call(lambda c: c.api.stats(container_id, stream=False, one_shot=True))
    return stats


def sample(session: Session, *, hosts: DockerHosts, bus: EventBus, store: redis.Redis, instance: str) -> int:
    """Emit one `resources` event per running sandbox; returns how many."""
    running = session.exec(select(Sandbox).where(Sandbox.status == SandboxStatus.running)).all()
    events = []
    for sandbox in running:
        host = hosts.get(sandbox.host)
        try:
            stats = _stats(host, str(sandbox.container_id))
        except docker.errors.NotFound:
            continue
        key = f"fleetgate:{instance}:cpu:{sandbox.id}"
        now = reading(stats)
        previous = store.get(key)
        store.setex(key, 120, json.dumps(now))
        memory = stats.get("memory_stats") or {}
        data = {
            "cpu_pct": cpu_percent(json.loads(previous) if previous else None, now, host.facts.ncpu),
            "mem_bytes": int(memory.get("usage") or 0) - int((memory.get("stats") or {}).get("cache") or 0),
            "mem_limit": int(memory.get("limit") or 0),
            "pids": int((stats.get("pids_stats") or {}).get("current") or 0),
        }
        events.append((sandbox.id, "resources", data))
    bus.submit(events)
    return len(events)
