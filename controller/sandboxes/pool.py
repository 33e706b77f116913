"""The warm pool: hardened sandboxes started ahead of time per template, claimed on create.

A pooled sandbox runs its supervisor with no credentials; the supervisor waits for them. Claiming is a
compare-and-set on the row (two creates never get the same sandbox), then configuration: the claimed sandbox
gets its own token, env, command and TTL, and must be seen running. If any of that fails the claim fails
closed: the sandbox is destroyed, never handed out, and the caller falls back to a cold create.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from controller.events.store import record
from controller.models import Sandbox, SandboxStatus, Template, User, utcnow
from controller.sandboxes.service import Plan, SandboxService

log = logging.getLogger(__name__)
REFILL_TASK = "fleetgate.pool.refill"


def claim(service: SandboxService, *, session: Session, plan: Plan, owner: User | None) -> Sandbox | None:
    """Take a ready sandbox from the plan's template pool and configure it, or None when none can be had."""
    template = plan.template
    assert template is not None
    assert template.id is not None
    candidates = session.exec(
        select(Sandbox.id)
        .where(Sandbox.template_id == template.id, Sandbox.status == SandboxStatus.pooled)
        .order_by(col(Sandbox.created_at))
        .limit(4)
    ).all()
    session.commit()
    for sandbox_id in candidates:
        won = session.execute(
            sa.update(Sandbox)
            .where(col(Sandbox.id) == sandbox_id, col(Sandbox.status) == SandboxStatus.pooled)
            .values(status=SandboxStatus.creating, owner_id=owner.id if owner else None)
        )
        session.commit()
        if won.rowcount == 1:  # type: ignore[attr-defined]
            sandbox = session.get(Sandbox, sandbox_id, populate_existing=True)
            session.commit()
            assert sandbox is not None
            service.enqueue(REFILL_TASK, [template.id])
            return _configure(service, session=session, sandbox=sandbox, plan=plan)
    service.enqueue(REFILL_TASK, [template.id])
    return None


def _configure(service: SandboxService, *, session: Session, sandbox: Sandbox, plan: Plan) -> Sandbox | None:
    host = service.hosts.get(sandbox.host)
    try:
        sandbox.env = plan.env
        sandbox.command = plan.command
        sandbox.keep_volume = plan.keep_volume
        sandbox.policy = plan.policy
        secret = service.issue_token(sandbox, plan.ttl_s)
        state = host.call(lambda c: c.api.inspect_container(sandbox.container_id))["State"]
        if state.get("Status") != "running":
            raise RuntimeError(f"pooled container is {state.get('Status')}")
        service.write_credentials(sandbox, secret)
    except Exception as e:
        log.warning("claim of pooled sandbox %s failed closed: %s", sandbox.id, e)
        _discard(service, session, sandbox)
        return None
    sandbox.status = SandboxStatus.running
    sandbox.created_at = utcnow()
    sandbox.started_at = sandbox.created_at
    record(session, sandbox.id, "lifecycle", status="running", source="pool")
    session.add(sandbox)
    session.commit()
    return sandbox


def _discard(service: SandboxService, session: Session, sandbox: Sandbox) -> None:
    try:
        service.destroy(service.hosts.get(sandbox.host), sandbox)
    finally:
        session.delete(sandbox)
        session.commit()


def pool_count(session: Session, template_id: int) -> int:
    """Sandboxes ready or being made for a template's pool."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Sandbox)
            .where(
                Sandbox.template_id == template_id,
                col(Sandbox.status).in_([SandboxStatus.pooled, SandboxStatus.warming]),
            )
        ).one()
    )


def refill(service: SandboxService, *, session: Session, template_id: int) -> int:
    """Top the template's pool up to its size (or trim it down); returns how many were started."""
    started = 0
    while True:
        # Read the template afresh each round: its pool may be resized, or the template deleted, meanwhile.
        template = session.get(Template, template_id, populate_existing=True)
        if template is None:
            return started
        if pool_count(session, template_id) >= template.pool_size:
            break
        plan = service.plan_for_pool(session=session, template=template)
        service.create_cold(session=session, plan=plan, owner=None, status=SandboxStatus.pooled)
        started += 1
    if pool_count(session, template_id) > template.pool_size:
        drain(service, session=session, template_id=template_id, keep=template.pool_size)
    return started


def drain(service: SandboxService, *, session: Session, template_id: int, keep: int = 0) -> int:
    """Remove ready pool entries beyond `keep` (a template's pool shrank or the template went away)."""
    ready = session.exec(
        select(Sandbox)
        .where(Sandbox.template_id == template_id, Sandbox.status == SandboxStatus.pooled)
        .order_by(col(Sandbox.created_at).desc())
    ).all()
    removed = 0
    for sandbox in ready[keep:] if keep else ready:
        won = session.execute(
            sa.update(Sandbox)
            .where(col(Sandbox.id) == sandbox.id, col(Sandbox.status) == SandboxStatus.pooled)
            .values(status=SandboxStatus.removed)
        )
        session.commit()
        if won.rowcount == 1:  # type: ignore[attr-defined]
            _discard(service, session, sandbox)
            removed += 1
    return removed
