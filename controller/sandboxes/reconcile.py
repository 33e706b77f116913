"""Keeping the database and the engines in agreement, as a pure plan: rows and what the engines hold in, the
changes to make out. The flow (`flows.upkeep`) gathers the inputs, carries out the plan, and saves the row changes
by compare-and-set, so a row that moved on meanwhile keeps its newer state.

- A row whose container vanished (removed with the docker CLI, say) becomes `gone`; a pool entry's row is dropped.
- A container or volume with this instance's labels and no row that should own it is an orphan and is removed.
- A row left `creating`/`warming` by a crash, whose container is running, is adopted (`running`/`pooled`).
- A pool entry whose template was deleted while it was being made is dropped with its container.
The engines are listed before the rows are read (a create writes its row before it makes its container), and a
row younger than the grace period is not taken for gone: another process may be creating it right now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.models import Sandbox, SandboxStatus
from controller.sandboxes.engine import ContainerInfo, VolumeInfo
from controller.sandboxes.spec import LABEL_KIND, LABEL_SANDBOX

GRACE = timedelta(seconds=90)
IN_FLIGHT = (SandboxStatus.creating, SandboxStatus.warming)
POOL = (SandboxStatus.pooled, SandboxStatus.warming)


@dataclass(frozen=True)
class HostView:
    """What one engine holds of this instance."""

    host: str
    containers: list[ContainerInfo]
    volumes: list[VolumeInfo]


@dataclass(frozen=True)
class Orphan:
    host: str
    container: str
    sandbox_id: str
    drop_credentials: bool


@dataclass
class Plan:
    orphans: list[Orphan] = field(default_factory=list)
    volumes: list[tuple[str, str, str]] = field(default_factory=list)  # (host, volume name, sandbox id)
    adopt: list[Sandbox] = field(default_factory=list)
    gone: list[Sandbox] = field(default_factory=list)
    drop: list[Sandbox] = field(default_factory=list)  # pool entries: destroyed, their rows deleted


def plan(rows: Mapping[str, Sandbox], views: list[HostView], *, now: datetime, grace: timedelta = GRACE) -> Plan:
    """What to change so that rows and engines agree; `views` holds only the engines that answered."""
    cutoff = now - grace
    result = Plan()
    for view in views:
        seen = _containers(rows, view, cutoff, result)
        for row in rows.values():
            if row.host == view.host and row.status.has_container and row.id not in seen and _settled(row, cutoff):
                (result.drop if row.status in POOL else result.gone).append(row)
        for volume in view.volumes:
            owner = rows.get(volume.labels.get(LABEL_SANDBOX, ""))
            if owner is not None and (owner.status != SandboxStatus.removed or owner.keep_volume):
                continue  # a gone sandbox keeps its workspace until someone removes the sandbox
            result.volumes.append((view.host, volume.name, volume.labels.get(LABEL_SANDBOX, "")))
    dropped = {row.id for row in result.drop}
    for row in rows.values():
        stray = row.template_id is None and row.status in POOL and row.id not in dropped
        if stray and (_settled(row, cutoff) or row.status == SandboxStatus.pooled):
            result.drop.append(row)
    return result


def _containers(rows: Mapping[str, Sandbox], view: HostView, cutoff: datetime, result: Plan) -> set[str]:
    """Sort one engine's containers into orphans and adoptions; returns the sandbox ids it holds."""
    seen: set[str] = set()
    for item in view.containers:
        sandbox_id = item.labels.get(LABEL_SANDBOX, "")
        row = rows.get(sandbox_id)
        if item.created > cutoff and item.labels.get(LABEL_KIND) != "sandbox":
            continue  # an image probe in flight, not a sandbox
        seen.add(sandbox_id)
        if row is None or row.host != view.host or not row.status.has_container:
            if row is not None and row.status in IN_FLIGHT and not _settled(row, cutoff):
                continue
            keep = row is not None and row.keep_volume
            result.orphans.append(
                Orphan(view.host, item.id, sandbox_id, drop_credentials=bool(sandbox_id) and not keep)
            )
        elif row.status in IN_FLIGHT and _settled(row, cutoff) and item.state.status == "running":
            result.adopt.append(row)
    return seen


def _settled(row: Sandbox, cutoff: datetime) -> bool:
    return row.status not in IN_FLIGHT or row.created_at < cutoff
