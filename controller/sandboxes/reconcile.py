"""Keeping the database and the engines in agreement: reconcile on start and periodically, reap expired sandboxes.

- A row whose container vanished (removed with the docker CLI, say) is marked `gone`; a pool entry's row is dropped.
- A container or volume with this instance's labels and no row that should own it is an orphan and is removed.
- A row left `creating`/`warming` by a crash, whose container is running, is adopted (`running`/`pooled`).
Rows younger than the grace period are left alone: another process may be creating them right now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import docker.errors
from sqlmodel import Session, col, select

from controller.events.store import record
from controller.models import Sandbox, SandboxStatus, utcnow
from controller.oversight.approvals import cancel_for_sandbox
from controller.sandboxes.service import SandboxService
from controller.sandboxes.spec import LABEL_INSTANCE, LABEL_KIND, LABEL_SANDBOX

log = logging.getLogger(__name__)
GRACE = timedelta(seconds=90)
_IN_FLIGHT = (SandboxStatus.creating, SandboxStatus.warming)


@dataclass
class Report:
    gone: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    volumes_removed: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)


def reconcile(service: SandboxService, *, session: Session, grace: timedelta = GRACE) -> Report:
    report = Report()
    cutoff = utcnow() - grace
    expected = [s for s in session.exec(select(Sandbox)).all() if s.status.has_container]
    by_id = {s.id: s for s in expected}
    for host in service.hosts:
        try:
            containers = host.call(
                lambda c: c.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={service.instance}"})
            )
        except Exception as e:  # an engine that is away must not stop the others being reconciled
            log.warning("reconcile skipped host %s: %s", host.name, e)
            continue
        seen: set[str] = set()
        for item in containers:
            if _young_helper(item, cutoff):
                continue  # an image probe in flight, not a sandbox
            sandbox_id = (item.get("Labels") or {}).get(LABEL_SANDBOX, "")
            seen.add(sandbox_id)
            row = by_id.get(sandbox_id)
            if row is None or row.host != host.name:
                _remove_orphan(service, host.name, item["Id"], sandbox_id, session, report, cutoff)
            elif row.status in _IN_FLIGHT and row.created_at < cutoff and item.get("State") == "running":
                _adopt(session, row, report)
        for row in expected:
            if row.host == host.name and row.id not in seen and _settled(row, cutoff):
                _mark_gone(service, session, row, report)
        _remove_orphan_volumes(service, host.name, session, report)
    _discard_stray_pool_entries(service, session, cutoff, report)
    session.commit()
    return report


def _discard_stray_pool_entries(service: SandboxService, session: Session, cutoff: object, report: Report) -> None:
    """Pool entries whose template was deleted while they were being made can never be claimed."""
    strays = session.exec(
        select(Sandbox).where(
            col(Sandbox.template_id).is_(None),
            col(Sandbox.status).in_([SandboxStatus.pooled, SandboxStatus.warming]),
        )
    ).all()
    for row in strays:
        if _settled(row, cutoff) or row.status == SandboxStatus.pooled:
            service.destroy(service.hosts.get(row.host), row)
            session.delete(row)
            report.orphans_removed.append(row.id)


def _young_helper(item: dict[str, Any], cutoff: datetime) -> bool:
    labels = item.get("Labels") or {}
    created = datetime.fromtimestamp(int(item.get("Created") or 0), UTC)
    return labels.get(LABEL_KIND) != "sandbox" and created > cutoff


def _settled(row: Sandbox, cutoff: object) -> bool:
    return row.status not in _IN_FLIGHT or row.created_at < cutoff  # type: ignore[operator]


def _adopt(session: Session, row: Sandbox, report: Report) -> None:
    row.status = SandboxStatus.pooled if row.status == SandboxStatus.warming else SandboxStatus.running
    row.started_at = row.started_at or utcnow()
    record(session, row.id, "lifecycle", status=row.status.value, source="reconcile")
    session.add(row)
    report.adopted.append(row.id)


def _mark_gone(service: SandboxService, session: Session, row: Sandbox, report: Report) -> None:
    if row.status in (SandboxStatus.pooled, SandboxStatus.warming):
        service.credentials.remove(row.id)
        session.delete(row)
    else:
        row.status = SandboxStatus.gone
        row.token_hash = None
        row.finished_at = row.finished_at or utcnow()
        record(session, row.id, "lifecycle", status="gone", source="reconcile")
        session.add(row)
        session.flush()
        cancel_for_sandbox(session, row.id, reason="the sandbox's container is gone")
    report.gone.append(row.id)


def _remove_orphan(
    service: SandboxService,
    host_name: str,
    container_id: str,
    sandbox_id: str,
    session: Session,
    report: Report,
    cutoff: object,
) -> None:
    row = session.get(Sandbox, sandbox_id) if sandbox_id else None
    if row is not None and row.status in _IN_FLIGHT and not _settled(row, cutoff):
        return
    host = service.hosts.get(host_name)
    try:
        host.call(lambda c: c.api.remove_container(container_id, force=True))
    except docker.errors.NotFound:
        pass
    keep = row is not None and row.keep_volume
    if sandbox_id and not keep:
        service.credentials.remove(sandbox_id)
    report.orphans_removed.append(sandbox_id or container_id[:12])


def _remove_orphan_volumes(service: SandboxService, host_name: str, session: Session, report: Report) -> None:
    host = service.hosts.get(host_name)
    volumes = (
        host.call(lambda c: c.api.volumes(filters={"label": f"{LABEL_INSTANCE}={service.instance}"})).get("Volumes")
        or []
    )
    for volume in volumes:
        sandbox_id = (volume.get("Labels") or {}).get(LABEL_SANDBOX, "")
        row = session.get(Sandbox, sandbox_id) if sandbox_id else None
        if row is not None and (row.status != SandboxStatus.removed or row.keep_volume):
            continue  # a gone sandbox keeps its workspace until someone removes the sandbox
        name = str(volume["Name"])
        try:
            host.call(lambda c: c.api.remove_volume(name, force=True))  # noqa: B023 (called at once)
            report.volumes_removed.append(name)
        except docker.errors.APIError as e:  # in use by a container being removed right now: next round
            log.info("volume %s not removed yet: %s", volume["Name"], e.explanation)


def reap(service: SandboxService, *, session: Session) -> list[str]:
    """Remove every sandbox whose TTL has run out; returns their ids."""
    expired = session.exec(
        select(Sandbox.id).where(
            col(Sandbox.expires_at) < utcnow(),
            col(Sandbox.status).in_(
                [SandboxStatus.running, SandboxStatus.paused, SandboxStatus.exited, SandboxStatus.stopped]
            ),
        )
    ).all()
    reaped = []
    for sandbox_id in expired:
        try:
            service.remove(session=session, sandbox_id=sandbox_id, reason="expired")
            reaped.append(sandbox_id)
        except Exception as e:  # one stuck sandbox must not keep the others alive past their TTL
            log.warning("could not reap %s: %s", sandbox_id, e)
    return reaped
