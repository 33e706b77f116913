"""Names that cross a process boundary, defined once: Celery task and queue names, Redis keys, event kinds.

The API, the gateway and the worker run in different processes (often different machines for the worker), so a
name typed twice is a name that can drift. Everything here is imported, never retyped; nothing here imports the
rest of the controller.
"""

from __future__ import annotations

import enum


class Task(enum.StrEnum):
    """Celery task names: the worker registers them, everyone else sends them."""

    POOL_REFILL = "fleetgate.pool.refill"
    POOL_TOP_UP = "fleetgate.pool.top_up"
    REAP = "fleetgate.sandboxes.reap"
    RECONCILE = "fleetgate.sandboxes.reconcile"
    SAMPLE = "fleetgate.sandboxes.sample"
    BUILD_IMAGES = "fleetgate.images.build"
    SWEEP_APPROVALS = "fleetgate.approvals.sweep"
    NOTIFY = "fleetgate.notify.approval"
    DELIVER = "fleetgate.notify.deliver"
    RUN_BROKER = "fleetgate.broker.run"


class EventKind(enum.StrEnum):
    """What an event on the live streams is about (the SSE `event:` field; the console filters on it)."""

    LIFECYCLE = "lifecycle"
    STDOUT = "stdout"
    STDERR = "stderr"
    ACTION = "action"
    APPROVAL = "approval"
    AGENT = "agent"
    LOG = "log"
    RESOURCES = "resources"
    EGRESS = "egress"  # a proxied connection or service call finished: bytes, status, model usage


OUTPUT_KINDS = (EventKind.STDOUT.value, EventKind.STDERR.value)


def task_queue(instance: str) -> str:
    """The Celery queue of one controller: two controllers that share a Redis database never take each other's work."""
    return f"fleetgate.{instance}"


class Keys:
    """The Redis keys and channels of one controller instance (two instances may share a Redis database)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.prefix = f"fleetgate:{instance}:"

    @property
    def fleet_stream(self) -> str:
        """Every event of the fleet, trimmed by length."""
        return self.prefix + "events"

    def sandbox_stream(self, sandbox_id: str) -> str:
        """One sandbox's events, with the same ids as in the fleet stream."""
        return f"{self.prefix}events:{sandbox_id}"

    @property
    def events_total(self) -> str:
        return self.prefix + "events_total"

    @property
    def decided(self) -> str:
        """The pub/sub channel that wakes agents waiting on a decision (`approval:ID`, `action:ID`)."""
        return self.prefix + "decided"

    def worker(self, name: str) -> str:
        """A short-lived liveness key per Celery worker."""
        return f"{self.prefix}workers:{name}"

    @property
    def workers(self) -> str:
        return self.prefix + "workers:*"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def cpu_reading(self, sandbox_id: str) -> str:
        """The resource sampler's last CPU reading of a sandbox."""
        return f"{self.prefix}cpu:{sandbox_id}"

    @property
    def everything(self) -> tuple[str, ...]:
        """Patterns matching every key of this instance: its own, its Celery queue and the queue's bindings."""
        queue = task_queue(self.instance)
        return (self.prefix + "*", queue + "*", f"_kombu.binding*.{queue}")
