"""Celery tasks: thin wrappers that take ids, call the services, and are safe to run twice."""

from __future__ import annotations

import logging
import socket
import threading
import time
from functools import cache
from typing import Any

import redis
from celery.signals import worker_ready
from sqlmodel import col, select

from controller.config import get_settings
from controller.db import session_scope
from controller.fleet import Fleet
from controller.images import build_images
from controller.models import Template
from controller.sandboxes import pool
from controller.sandboxes.reconcile import reap, reconcile
from controller.worker.celery_app import app

log = logging.getLogger(__name__)


def worker_key(instance: str, name: str) -> str:
    return f"fleetgate:{instance}:workers:{name}"


@cache
def fleet() -> Fleet:
    return Fleet(get_settings(), send_task=app.send_task)


def _lock(name: str, timeout: int) -> Any:
    f = fleet()
    return f.redis.lock(f"fleetgate:{f.instance}:lock:{name}", timeout=timeout, blocking=False)


@app.task(name="fleetgate.pool.refill")
def refill_pool(template_id: int) -> int:
    """Top one template's warm pool up to its size; a second refill of the same pool skips."""
    lock = _lock(f"pool:{template_id}", timeout=900)
    if not lock.acquire(blocking=False):
        return 0
    try:
        with session_scope(fleet().engine) as session:
            return pool.refill(fleet().sandboxes, session=session, template_id=template_id)
    finally:
        lock.release()


@app.task(name="fleetgate.pool.top_up")
def top_up_pools() -> int:
    """Queue a refill for every template that has a pool (the safety net behind claim-time refills)."""
    with session_scope(fleet().engine) as session:
        ids = session.exec(select(Template.id).where(col(Template.pool_size) > 0)).all()
    for template_id in ids:
        refill_pool.delay(template_id)
    return len(ids)


@app.task(name="fleetgate.sandboxes.reap")
def reap_expired() -> list[str]:
    lock = _lock("reap", timeout=300)
    if not lock.acquire(blocking=False):
        return []
    try:
        with session_scope(fleet().engine) as session:
            return reap(fleet().sandboxes, session=session)
    finally:
        lock.release()


@app.task(name="fleetgate.sandboxes.reconcile")
def reconcile_engines() -> dict[str, list[str]]:
    lock = _lock("reconcile", timeout=300)
    if not lock.acquire(blocking=False):
        return {}
    try:
        with session_scope(fleet().engine) as session:
            report = reconcile(fleet().sandboxes, session=session)
        return report.__dict__
    finally:
        lock.release()


@app.task(name="fleetgate.images.build")
def build_images_task(base: str | None = None, force: bool = False) -> dict[str, str]:
    """Build the sandbox images on the local engine (offline by default); skipped when already current."""
    lock = _lock("images", timeout=3600)
    if not lock.acquire(blocking=False):
        return {"status": "another build is running"}
    try:
        return build_images(fleet().hosts.local.client, base=base, force=force, progress=log.info)
    finally:
        lock.release()


@worker_ready.connect
def _announce_liveness(sender: Any, **_: Any) -> None:
    """Keep a short-lived key per worker in Redis while it runs; `GET /api/v1/status` counts them."""
    name = getattr(sender, "hostname", None) or socket.gethostname()

    def beat() -> None:
        while True:
            try:
                fleet().redis.setex(worker_key(fleet().instance, name), 30, "alive")
            except redis.RedisError as e:
                log.warning("worker heartbeat not written: %s", e)
            time.sleep(10)

    threading.Thread(target=beat, name="fleetgate-liveness", daemon=True).start()
