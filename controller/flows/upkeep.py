"""The controller's housekeeping, run by the worker on a clock (and at start-up): warm pools kept full, expired
sandboxes reaped, the database and the engines reconciled."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlmodel import select

from controller.errors import Conflict, FleetgateError
from controller.flows.sandboxes import SandboxFlows, change
from controller.flows.unit import Transactions
from controller.models import Sandbox, SandboxCreate, SandboxStatus, Template, utcnow
from controller.oversight import audit
from controller.sandboxes import lifecycle, pool, reconcile
from controller.sandboxes.hosts import Hosts
from controller.sandboxes.reconcile import HostView
from controller.sandboxes.spec import LABEL_INSTANCE

log = logging.getLogger(__name__)
SYSTEM = "system"


class Upkeep:
    def __init__(self, *, tx: Transactions, hosts: Hosts, sandboxes: SandboxFlows) -> None:
        self.tx = tx
        self.hosts = hosts
        self.sandboxes = sandboxes
        self.provisioner = sandboxes.provisioner

    # --- warm pools -----------------------------------------------------------------------------------------

    def refill(self, template_id: int) -> int:
        """Top the template's pool up to its size (or trim it down); returns how many were started."""
        started = 0
        while True:
            # Read the template afresh each round: its pool may be resized, or the template deleted, meanwhile.
            with self.tx.read() as session:
                template = session.get(Template, template_id)
                count = pool.size(session, template_id)
            if template is None:
                return started
            if count >= template.pool_size:
                break
            plan = self.sandboxes.plan(SandboxCreate(template=template.name))
            self.sandboxes.make(plan, owner=None, pooled=True)
            started += 1
        if count > template.pool_size:
            self.drain(template_id, keep=template.pool_size)
        return started

    def drain(self, template_id: int, *, keep: int = 0) -> int:
        """Remove ready pool entries beyond `keep` (a template's pool shrank, its image changed, or it went away)."""
        with self.tx.read() as session:
            surplus = pool.beyond(session, template_id, keep)
        removed = 0
        for sandbox in surplus:
            with self.tx.write() as t:
                won = pool.retire(t.session, sandbox.id)
            if won:
                self.sandboxes.discard(self.hosts.get(sandbox.host), sandbox)
                removed += 1
        return removed

    # --- reaping ----------------------------------------------------------------------------------------------

    def reap(self) -> list[str]:
        """Remove every sandbox whose TTL has run out; returns their ids."""
        with self.tx.read() as session:
            expired = lifecycle.expired(session)
        reaped = []
        for sandbox_id in expired:
            try:
                self.sandboxes.remove(sandbox_id, actor=SYSTEM, reason="expired", event="sandbox.expired")
                reaped.append(sandbox_id)
            except FleetgateError as e:  # one stuck sandbox must not keep the others alive past their TTL
                log.warning("could not reap %s: %s", sandbox_id, e.message)
        return reaped

    # --- reconciling --------------------------------------------------------------------------------------------

    def reconcile(self, *, grace: timedelta = reconcile.GRACE) -> dict[str, list[str]]:
        """Bring rows and engines into agreement (see `sandboxes.reconcile`); returns what changed, by kind."""
        # The engines first, then the rows: a create writes its row before it makes its container, so every
        # container listed here has its row in what is read next, and none is taken for an orphan.
        views = self._views()
        with self.tx.read() as session:
            rows = {s.id: s for s in session.exec(select(Sandbox))}
        plan = reconcile.plan(rows, views, now=utcnow(), grace=grace)
        report: dict[str, list[str]] = {"orphans_removed": [], "volumes_removed": [], "adopted": [], "gone": []}
        for orphan in plan.orphans:
            self.hosts.get(orphan.host).remove_container(orphan.container)
            if orphan.drop_credentials:
                self.provisioner.credentials.remove(orphan.sandbox_id)
            report["orphans_removed"].append(orphan.sandbox_id or orphan.container[:12])
        for host, name, sandbox_id in plan.volumes:
            try:
                engine = self.hosts.get(host)
                engine.remove_volume(name)
                if engine.is_local and sandbox_id:
                    self.provisioner.workspaces.remove(sandbox_id)
                report["volumes_removed"].append(name)
            except Conflict as e:  # in use by a container being removed right now: next round
                log.info("volume %s not removed yet: %s", name, e.message)
        for row in plan.drop:
            self.sandboxes.discard(self.hosts.get(row.host), row)
            report["orphans_removed"].append(row.id)
        with self.tx.write() as t:
            for row in plan.adopt:
                found = SandboxStatus.pooled if row.status == SandboxStatus.warming else SandboxStatus.running
                changes: dict[str, Any] = {"started_at": row.started_at or utcnow()}
                if not lifecycle.move(t.session, row, found, source="reconcile", changes=changes):
                    continue
                if found == SandboxStatus.running:  # pool entries are not people's sandboxes yet
                    audit.append(t.session, actor=SYSTEM, event="sandbox.adopted", subject=f"sandbox:{row.id}")
                report["adopted"].append(row.id)
            for row in plan.gone:
                if change(
                    t,
                    row,
                    SandboxStatus.gone,
                    actor=SYSTEM,
                    event="sandbox.gone",
                    source="reconcile",
                    why="the sandbox's container is gone",
                ):
                    report["gone"].append(row.id)
        return report

    def _views(self) -> list[HostView]:
        """What each engine holds of this instance; an engine that is away is skipped, not fatal."""
        mine = {LABEL_INSTANCE: self.provisioner.instance}
        views = []
        for engine in self.hosts:
            try:
                views.append(HostView(engine.name, engine.containers(mine), engine.volumes(mine)))
            except FleetgateError as e:
                log.warning("reconcile skipped host %s: %s", engine.name, e.message)
        return views
