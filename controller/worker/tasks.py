"""Celery tasks: thin wrappers that take ids, call the services, and are safe to run twice."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import timedelta
from functools import cache
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from celery.signals import worker_ready
from sqlmodel import Session, col, select

from controller.config import get_settings
from controller.db import session_scope, write_session
from controller.fleet import Fleet
from controller.images import build_images
from controller.models import Template, utcnow
from controller.oversight import audit
from controller.oversight.approvals import expire_due
from controller.oversight.brokers import broker_for
from controller.oversight.models import Action, Delivery, Webhook
from controller.oversight.notify import BACKOFF_S, claim, plan_deliveries, send, stranded
from controller.oversight.queue import after_decision
from controller.oversight.signals import publish_decided
from controller.sandboxes import pool
from controller.sandboxes.reconcile import reap, reconcile
from controller.sandboxes.sampling import sample
from controller.worker.celery_app import app

log = logging.getLogger(__name__)


def worker_key(instance: str, name: str) -> str:
    return f"fleetgate:{instance}:workers:{name}"


@cache
def fleet() -> Fleet:
    f = Fleet(get_settings(), send_task=app.send_task)
    f.bus  # noqa: B018 (installs this process's event bus)
    return f


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
            reaped = reap(fleet().sandboxes, session=session)
        for sandbox_id in reaped:
            audit.record_event(fleet().engine, actor="system", event="sandbox.expired", subject=f"sandbox:{sandbox_id}")
        return reaped
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


@app.task(name="fleetgate.images.build", ignore_result=False)
def build_images_task(base: str | None = None, force: bool = False) -> dict[str, str]:
    """Build the sandbox images on the local engine (offline by default); skipped when already current."""
    lock = _lock("images", timeout=3600)
    if not lock.acquire(blocking=False):
        return {"status": "another build is running"}
    try:
        return build_images(fleet().hosts.local.client, base=base, force=force, progress=log.info)
    finally:
        lock.release()


@app.task(name="fleetgate.sandboxes.sample")
def sample_resources() -> int:
    """One resource sample (CPU, memory, pids) per running sandbox, onto the live streams; never two at once."""
    lock = _lock("sample", timeout=300)
    if not lock.acquire(blocking=False):
        return 0
    try:
        f = fleet()
        with Session(f.engine) as session:
            return sample(session, hosts=f.hosts, bus=f.bus, store=f.redis, instance=f.instance)
    finally:
        lock.release()


@app.task(name="fleetgate.approvals.sweep")
def sweep_approvals() -> list[int]:
    """Apply the default outcome to approvals past their deadline, and wake their agents; queue again the work
    whose task never reached the worker (Redis was away when it was due)."""
    f = fleet()
    with write_session(f.engine) as session:
        decided = expire_due(session)
        stuck = session.exec(
            select(Action.id).where(
                Action.broker_status == "queued", col(Action.decided_at) < utcnow() - timedelta(seconds=30)
            )
        ).all()
        # A notification is claimed by compare-and-set, so queueing one twice is harmless; a delivery is sent
        # at least once (receivers dedupe by X-Fleetgate-Delivery), so it is given a minute before it counts.
        notes, sends = stranded(session, notes_after=timedelta(seconds=5), sends_after=timedelta(seconds=60))
    after_decision(f, decided)
    for action_id in stuck:
        run_broker.delay(action_id)
    for approval_id, event in notes:
        notify_approval.delay(approval_id, event)
    for delivery_id in sends:
        deliver_webhook.delay(delivery_id)
    return [d.approval.id or 0 for d in decided]


@app.task(name="fleetgate.notify.approval")
def notify_approval(approval_id: int, event: str) -> list[int]:
    """Plan one webhook delivery per subscriber of `event` and send each in its own task."""
    f = fleet()
    with write_session(f.engine) as session:
        if not claim(session, approval_id, event):
            return []  # planned already, by an earlier run of this task
        deliveries = plan_deliveries(
            session, approval_id=approval_id, event=event, base_url=f.settings.public_url, home=f.settings.home
        )
        ids = [d.id or 0 for d in deliveries]
    for delivery_id in ids:
        deliver_webhook.delay(delivery_id)
    return ids


@app.task(name="fleetgate.notify.deliver", bind=True, max_retries=len(BACKOFF_S))
def deliver_webhook(self: Any, delivery_id: int) -> str:
    """Send one delivery; retried with exponential backoff, its outcome kept on the delivery row."""
    f = fleet()
    with session_scope(f.engine) as session:
        delivery = session.get(Delivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is None or hook is None or delivery.status == "delivered":
            return "skipped"
        delivery.attempts += 1
        try:
            send(hook, delivery)
        except httpx.HTTPError as e:
            delivery.last_error = str(e)[:500]
            retries = self.request.retries
            delivery.status = "failed" if retries >= len(BACKOFF_S) else "retrying"
            session.add(delivery)
            session.commit()
            if retries >= len(BACKOFF_S):
                return "failed"
            raise self.retry(countdown=BACKOFF_S[retries], exc=e) from e
        delivery.status, delivery.delivered_at = "delivered", utcnow()
        session.add(delivery)
    return "delivered"


@app.task(name="fleetgate.broker.run")
def run_broker(action_id: int) -> str:
    """Carry out an allowed brokered action once (queued -> running -> done|failed) and wake its agent."""
    f = fleet()
    with write_session(f.engine) as session:
        claimed = session.execute(
            sa.update(Action)
            .where(col(Action.id) == action_id, col(Action.broker_status) == "queued")
            .values(broker_status="running")
        )
        action = session.get(Action, action_id)
        if claimed.rowcount != 1 or action is None:  # type: ignore[attr-defined]
            return "skipped"
        args = action.final_args if action.final_args is not None else action.args
    try:
        result, status = broker_for(action.tool)(f.settings, args), "done"
    except Exception as e:  # any broker failure is reported to the agent, never retried blindly
        result, status = {"error": str(e)[:500]}, "failed"
    with write_session(f.engine) as session:
        action = session.get(Action, action_id)
        assert action is not None
        action.broker_status, action.result = status, result
        session.add(action)
        audit.append(
            session,
            actor="controller",
            event=f"broker.{status}",
            subject=f"action:{action_id}",
            tool=action.tool,
            result=result,
        )
    publish_decided(f.redis, f.instance, [f"action:{action_id}"])
    return status


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
