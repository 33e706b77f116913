"""Celery tasks: thin wrappers that take ids, call the flows, and are safe to run twice.

Each clock task takes a Redis lock so that two runs never overlap (a slow engine can make a run outlast its period).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

import redis
from celery.signals import worker_ready
from sqlmodel import Session, col, select

from controller.config import get_settings
from controller.fleet import Fleet, event_bus
from controller.models import Sandbox, SandboxStatus, Template
from controller.names import Task
from controller.oversight.notify import BACKOFF_S
from controller.sandboxes.sampling import sample
from controller.taskqueue import CeleryTasks
from controller.worker.celery_app import app

log = logging.getLogger(__name__)
T = TypeVar("T")


@cache
def fleet() -> Fleet:
    """The worker process's fleet, made at its first task, with its own event bus."""
    settings = get_settings()
    return Fleet(settings, events=event_bus(settings), tasks=CeleryTasks(settings, app=app))


@contextmanager
def exclusive(name: str, timeout: int) -> Iterator[bool]:
    """Whether this run holds the lock `name` (another run of the same work holds it otherwise)."""
    f = fleet()
    lock = f.redis.lock(f.keys.lock(name), timeout=timeout, blocking=False)
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def alone(name: str, timeout: int, work: Callable[[], T], skipped: T) -> T:
    with exclusive(name, timeout) as held:
        return work() if held else skipped


@app.task(name=Task.POOL_REFILL.value)
def refill_pool(template_id: int) -> int:
    """Top one template's warm pool up to its size; a second refill of the same pool skips."""
    return alone(f"pool:{template_id}", 900, lambda: fleet().upkeep.refill(template_id), 0)


@app.task(name=Task.POOL_TOP_UP.value)
def top_up_pools() -> int:
    """Queue a refill for every template that has a pool (the safety net behind claim-time refills)."""
    with Session(fleet().db) as session:
        ids = session.exec(select(Template.id).where(col(Template.pool_size) > 0)).all()
    for template_id in ids:
        refill_pool.delay(template_id)
    return len(ids)


@app.task(name=Task.REAP.value)
def reap_expired() -> list[str]:
    return alone("reap", 300, fleet().upkeep.reap, [])


@app.task(name=Task.RECONCILE.value)
def reconcile_engines() -> dict[str, list[str]]:
    return alone("reconcile", 300, fleet().upkeep.reconcile, {})


@app.task(name=Task.BUILD_IMAGES.value, ignore_result=False)
def build_images_task(base: str | None = None, force: bool = False) -> dict[str, str]:
    """Build the sandbox images on the local engine (offline by default); skipped when already current."""

    def build() -> dict[str, str]:
        return fleet().hosts.local.build_images(base=base, force=force, progress=log.info)

    return alone("images", 3600, build, {"status": "another build is running"})


@app.task(name=Task.SAMPLE.value)
def sample_resources() -> int:
    """One resource sample (CPU, memory, pids) per running sandbox, onto the live streams; never two at once."""

    def take() -> int:
        f = fleet()
        with Session(f.db) as session:
            running = list(session.exec(select(Sandbox).where(Sandbox.status == SandboxStatus.running)))
        return sample(running, hosts=f.hosts, bus=f.events, store=f.redis, keys=f.keys, workspaces=f.workspaces)

    return alone("sample", 300, take, 0)


@app.task(name=Task.SWEEP_APPROVALS.value)
def sweep_approvals() -> list[int]:
    """Apply the default outcome to approvals past their deadline, and queue again what never reached a worker."""
    return fleet().outbox.sweep()


@app.task(name=Task.NOTIFY.value)
def notify_approval(approval_id: int, event: str) -> list[int]:
    """Plan one webhook delivery per subscriber of `event`; each is sent by its own task."""
    return fleet().outbox.plan_notifications(approval_id, event)


@app.task(name=Task.DELIVER.value, bind=True, max_retries=len(BACKOFF_S))
def deliver_webhook(self: Any, delivery_id: int) -> str:
    """Send one delivery; retried with exponential backoff, its outcome kept on the delivery row."""
    retries = self.request.retries
    outcome = fleet().outbox.deliver(delivery_id, attempt=retries)
    if isinstance(outcome, str):
        return outcome
    raise self.retry(countdown=BACKOFF_S[retries], exc=outcome)


@app.task(name=Task.RUN_BROKER.value)
def run_broker(action_id: int) -> str:
    """Carry out an allowed brokered action once and wake its agent."""
    return fleet().outbox.run_broker(action_id)


@worker_ready.connect
def _announce_liveness(sender: Any, **_: Any) -> None:
    """Keep a short-lived key per worker in Redis while it runs; `GET /api/v1/status` counts them."""
    name = getattr(sender, "hostname", None) or socket.gethostname()

    def beat() -> None:
        while True:
            try:
                fleet().redis.setex(fleet().keys.worker(name), 30, "alive")
            except redis.RedisError as e:
                log.warning("worker heartbeat not written: %s", e)
            time.sleep(10)

    threading.Thread(target=beat, name="fleetgate-liveness", daemon=True).start()
