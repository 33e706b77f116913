"""Resource samples of running sandboxes from the engine's stats: CPU %, memory, pids.

One-shot stats (one request per container, no two-second wait) carry no previous CPU reading, so the sampler
keeps each container's last reading in Redis and computes CPU % between its own samples.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from controller.errors import FleetgateError
from controller.events.bus import EventSink
from controller.models import Sandbox
from controller.names import EventKind, Keys
from controller.sandboxes.hosts import Hosts
from controller.sandboxes.workspaces import WorkspaceStore

log = logging.getLogger(__name__)


STATS_AT_ONCE = 32  # the docker-py client's connection pool (docker_engine.py)
MIN_WINDOW_NS = 1_000_000_000  # CPU % over less than a second of wall time is mostly rounding


def cpu_percent(previous: dict[str, Any] | None, now: dict[str, int], ncpu: int) -> tuple[float | None, dict[str, Any]]:
    """CPU use since the previous reading, as % of one core (so 2 busy cores read 200), and the reading to keep.

    Two samples too close together (a backlog of sample tasks running back to back) would divide by almost
    nothing: the older reading is kept, with the figure it gave, until a whole window has passed.
    """
    if not previous:
        return None, dict(now)
    used = now["cpu"] - previous["cpu"]
    elapsed = now["system"] - previous["system"]  # host CPU time over all cores: wall time x ncpu
    if used < 0 or elapsed < 0:  # the container restarted, or the engine's counters did
        return None, dict(now)
    if elapsed < MIN_WINDOW_NS * ncpu:
        pct = previous.get("pct")
        return (float(pct) if pct is not None else None), previous
    pct = round(used / elapsed * ncpu * 100, 1)
    return pct, {**now, "pct": pct}


def reading(stats: dict[str, Any]) -> dict[str, int]:
    cpu = stats.get("cpu_stats") or {}
    return {
        "cpu": int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
        "system": int(cpu.get("system_cpu_usage") or 0),
    }


def memory_used(memory: dict[str, Any]) -> int:
    """Memory in use as `docker stats` counts it: usage less the inactive page cache (cgroup v2, then v1)."""
    detail = memory.get("stats") or {}
    inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, int(memory.get("usage") or 0) - int(inactive or 0))


def _stats(hosts: Hosts, sandbox: Sandbox) -> tuple[Sandbox, dict[str, Any] | None, str | None]:
    """One container's one-shot stats, or why there are none (gone, stopping, its engine away)."""
    try:
        return sandbox, hosts.get(sandbox.host).stats(str(sandbox.container_id)), None
    except FleetgateError as e:
        return sandbox, None, e.message.splitlines()[0][:200]


def sample(
    running: list[Sandbox],
    *,
    hosts: Hosts,
    bus: EventSink,
    store: redis.Redis,
    keys: Keys,
    workspaces: WorkspaceStore | None = None,
) -> int:
    """Emit one `resources` event per running sandbox; returns how many.

    The engine answers a container's stats at its next collection tick (about a second when it has been asked
    recently), so asking fifty in turn would take fifty seconds: they are asked all at once, and one that cannot
    answer costs only its own sample.
    """
    if not running:
        return 0
    with ThreadPoolExecutor(min(STATS_AT_ONCE, len(running)), thread_name_prefix="stats") as pool:
        answers = list(pool.map(lambda sandbox: _stats(hosts, sandbox), running))
    missed = [f"{sandbox.id}: {why}" for sandbox, _, why in answers if why]
    if missed:
        log.warning("no resource sample for %d sandbox(es), e.g. %s", len(missed), missed[0])
    answered = [(sandbox, stats) for sandbox, stats, _ in answers if stats is not None]
    cpu_keys = [keys.cpu_reading(sandbox.id) for sandbox, _ in answered]
    previous = store.mget(cpu_keys) if cpu_keys else []
    keep_all = store.pipeline(transaction=False)
    events = []
    for (sandbox, stats), key, before in zip(answered, cpu_keys, previous, strict=True):
        ncpu = hosts.get(sandbox.host).facts().ncpu
        cpu_pct, keep = cpu_percent(json.loads(before) if before else None, reading(stats), ncpu)
        keep_all.set(key, json.dumps(keep), ex=120)
        memory = stats.get("memory_stats") or {}
        data = {
            "cpu_pct": cpu_pct,
            "mem_bytes": memory_used(memory),
            "mem_limit": int(memory.get("limit") or 0),
            "pids": int((stats.get("pids_stats") or {}).get("current") or 0),
        }
        disk = workspaces.usage(sandbox.id) if workspaces is not None else None
        if disk is not None:
            data["disk_used_mb"], data["disk_limit_mb"] = disk.used_mb, disk.limit_mb
        events.append((sandbox.id, EventKind.RESOURCES.value, data))
    keep_all.execute()
    bus.submit(events)
    return len(events)
