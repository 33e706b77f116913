"""Sandbox lifecycle: create (cold or from the warm pool), live status, exec, stop, remove.

The database is the source of truth for what should exist; the engine for what does. A create either completes or
leaves nothing behind: no row, no container, no volume, no credentials.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker.errors
import sqlalchemy as sa
from sqlmodel import Session, col, select

import agent_runtime
from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret
from controller.config import Settings
from controller.errors import (
    Conflict,
    Invalid,
    SandboxNotFound,
    TemplateNotFound,
)
from controller.events.store import record
from controller.models import (
    ExecRequest,
    ExecResult,
    Sandbox,
    SandboxCreate,
    SandboxStatus,
    Template,
    User,
    utcnow,
)
from controller.oversight.policy_store import compile_policy
from controller.sandboxes.credentials import Credentials
from controller.sandboxes.engine import ImageGate, engine_refusals, provision
from controller.sandboxes.execution import run_exec
from controller.sandboxes.hosts import LOCAL, DockerHost, DockerHosts, engine_errors
from controller.sandboxes.spec import (
    LABEL_INSTANCE,
    LABEL_SANDBOX,
    WORKSPACE,
    HostPaths,
    volume_name,
)

Enqueue = Callable[[str, list[Any]], object]
LIVE = (SandboxStatus.running, SandboxStatus.paused, SandboxStatus.exited, SandboxStatus.stopped)
_ENGINE_STATES = {
    "created": SandboxStatus.stopped,
    "running": SandboxStatus.running,
    "restarting": SandboxStatus.running,
    "paused": SandboxStatus.paused,
    "exited": SandboxStatus.exited,
    "dead": SandboxStatus.exited,
    "removing": SandboxStatus.exited,
}


def new_sandbox_id() -> str:
    return "sb_" + secrets.token_hex(6)


@dataclass(frozen=True)
class Plan:
    """A create request resolved against its template, the defaults and the host's limits."""

    template: Template | None
    image: str
    host: DockerHost
    cpus: float
    memory_mb: int
    pids: int
    env: dict[str, str]
    command: list[str] | None
    ttl_s: int | None
    keep_volume: bool
    policy: str | dict[str, Any] | None = None

    def matches_pool_of(self, template: Template, settings: Settings) -> bool:
        return (
            self.image == template.image
            and self.host.name == template.host
            and self.cpus == (template.cpus or settings.default_cpus)
            and self.memory_mb == (template.memory_mb or settings.default_memory_mb)
            and self.pids == (template.pids or settings.default_pids)
        )


class SandboxService:
    def __init__(
        self,
        *,
        settings: Settings,
        hosts: DockerHosts,
        instance: str,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.settings = settings
        self.hosts = hosts
        self.instance = instance
        self.credentials = Credentials(settings.sandboxes_dir, settings.sandbox_uid)
        self._enqueue = enqueue
        self._paths_root = Path(agent_runtime.__file__).resolve().parent
        self.images = ImageGate(instance, settings.sandbox_uid)

    # --- create -----------------------------------------------------------------------------------------

    def plan(self, *, session: Session, request: SandboxCreate) -> Plan:
        """Resolve and validate a create request; raises Invalid with what to change."""
        template = None
        if request.template:
            template = session.exec(select(Template).where(Template.name == request.template)).first()
            if template is None:
                raise TemplateNotFound(request.template)
        host = self.hosts.get(request.host or (template.host if template else LOCAL))
        if not host.is_local:
            # The runtime socket and each sandbox's credentials are bind-mounted from this machine, which a remote
            # engine cannot see: a sandbox there would never reach its controller. Refuse rather than half-work.
            raise Invalid(
                f"host {host.name!r} ({host.url}) is remote; sandboxes run on engines that share this machine's "
                f"files for now (the runtime relay for remote engines is not built yet)"
            )
        res = request.resources
        s = self.settings
        plan = Plan(
            template=template,
            image=request.image or (template.image if template else s.default_image),
            host=host,
            cpus=res.cpus or (template.cpus if template and template.cpus else s.default_cpus),
            memory_mb=res.memory_mb or (template.memory_mb if template and template.memory_mb else s.default_memory_mb),
            pids=res.pids or (template.pids if template and template.pids else s.default_pids),
            env={**(template.env if template else {}), **request.env},
            command=request.command or (template.command if template else None),
            ttl_s=request.ttl_s or (template.ttl_s if template else None),
            keep_volume=request.keep_volume,
            policy=request.policy,
        )
        self._check_limits(plan)
        if plan.policy is not None:
            compile_policy(plan.policy, source="sandbox policy")
        session.commit()  # end the reads before the image check and the engine calls
        return plan

    def _check_limits(self, plan: Plan) -> None:
        self.check_limits(plan.host, cpus=plan.cpus, memory_mb=plan.memory_mb, ttl_s=plan.ttl_s)

    def check_limits(self, host: DockerHost, *, cpus: float | None, memory_mb: int | None, ttl_s: int | None) -> None:
        """Limits a sandbox on `host` can be given (also checked when a template is saved, not at its first use)."""
        facts = host.facts
        if cpus is not None and cpus > facts.ncpu:
            raise Invalid(f"resources.cpus {cpus:g} is more than host {host.name!r} has ({facts.ncpu})")
        if memory_mb is not None and facts.mem_bytes and memory_mb * (1 << 20) > facts.mem_bytes:
            raise Invalid(
                f"resources.memory_mb {memory_mb} is more than host {host.name!r} has ({facts.mem_bytes >> 20} MiB)"
            )
        if ttl_s is not None and ttl_s > self.settings.max_ttl_s:
            raise Invalid(f"ttl_s {ttl_s} is longer than the maximum {self.settings.max_ttl_s} s")

    def plan_for_pool(self, *, session: Session, template: Template) -> Plan:
        return self.plan(session=session, request=SandboxCreate(template=template.name))

    def create(self, *, session: Session, request: SandboxCreate, owner: User | None) -> Sandbox:
        """Create and start a sandbox; from the template's warm pool when one is ready and fits."""
        plan = self.plan(session=session, request=request)
        if (
            plan.template is not None
            and plan.template.pool_size > 0
            and plan.matches_pool_of(plan.template, self.settings)
        ):
            from controller.sandboxes.pool import claim

            claimed = claim(self, session=session, plan=plan, owner=owner)
            if claimed is not None:
                return claimed
        return self.create_cold(session=session, plan=plan, owner=owner)

    def create_cold(
        self,
        *,
        session: Session,
        plan: Plan,
        owner: User | None,
        status: SandboxStatus = SandboxStatus.running,
    ) -> Sandbox:
        self.require_image(plan.host, plan.image)
        pooled = status == SandboxStatus.pooled
        sandbox = Sandbox(
            id=new_sandbox_id(),
            status=SandboxStatus.warming if pooled else SandboxStatus.creating,
            host=plan.host.name,
            image=plan.image,
            template_id=plan.template.id if plan.template else None,
            owner_id=owner.id if owner else None,
            cpus=plan.cpus,
            memory_mb=plan.memory_mb,
            pids=plan.pids,
            env={} if pooled else plan.env,
            command=None if pooled else plan.command,
            policy=None if pooled else plan.policy,
            keep_volume=plan.keep_volume,
            volume=volume_name(self.instance, ""),
        )
        sandbox.volume = volume_name(self.instance, sandbox.id)
        session.add(sandbox)
        session.commit()
        try:
            secret = None if pooled else self.issue_token(sandbox, plan.ttl_s)
            self.credentials.prepare(sandbox.id)
            if secret is not None:
                self.write_credentials(sandbox, secret)
            self._provision(plan.host, sandbox, plan.template.name if plan.template else None)
        except BaseException:
            self.destroy(plan.host, sandbox)
            session.delete(sandbox)
            session.commit()
            raise
        sandbox.status = status
        sandbox.started_at = utcnow()
        if not pooled:
            record(session, sandbox.id, "lifecycle", status="running", source="create")
        session.add(sandbox)
        session.commit()
        return sandbox

    def issue_token(self, sandbox: Sandbox, ttl_s: int | None) -> str:
        secret = new_secret(SANDBOX_TOKEN_PREFIX)
        sandbox.token_hash = hash_token(secret)
        sandbox.ttl_s = ttl_s
        sandbox.expires_at = utcnow() + timedelta(seconds=ttl_s) if ttl_s else None
        return secret

    def write_credentials(self, sandbox: Sandbox, secret: str) -> None:
        """What the runtime inside reads: who it is, its token, what to run."""
        self.credentials.write(
            sandbox.id,
            {
                "sandbox_id": sandbox.id,
                "token": secret,
                "socket": "/run/fleetgate/runtime.sock",
                "command": sandbox.command,
                "env": sandbox.env,
                "heartbeat_s": self.settings.heartbeat_s,
            },
        )

    def require_image(self, host: DockerHost, image: str) -> None:
        """The image must exist on the host and be able to host the runtime (probed once per image id)."""
        self.images.require(host, image)

    def _provision(self, host: DockerHost, sandbox: Sandbox, template: str | None) -> None:
        paths = HostPaths(self._paths_root, self.settings.gateway_dir, self.credentials.folder(sandbox.id))
        provision(host, sandbox, template, instance=self.instance, uid=self.settings.sandbox_uid, paths=paths)

    # --- engine side teardown -----------------------------------------------------------------------------

    def destroy(self, host: DockerHost, sandbox: Sandbox, *, keep_volume: bool = False) -> None:
        """Remove the container, the volume (unless kept) and the credentials; missing pieces are fine."""
        with engine_errors(host):
            name = sandbox.container_id or f"fleetgate-{self.instance}-{sandbox.id}"
            try:
                host.client.api.remove_container(name, force=True, v=False)
            except docker.errors.NotFound:
                pass
            if sandbox.volume and not keep_volume:
                try:
                    host.client.api.remove_volume(sandbox.volume, force=True)
                except docker.errors.NotFound:
                    pass
        self.credentials.remove(sandbox.id)

    # --- read -------------------------------------------------------------------------------------------

    def get(self, session: Session, sandbox_id: str, *, live: bool = True) -> Sandbox:
        sandbox = session.get(Sandbox, sandbox_id)
        session.commit()  # end the read: what follows may call the engine, then write
        if sandbox is None or sandbox.status in (SandboxStatus.pooled, SandboxStatus.warming):
            raise SandboxNotFound(sandbox_id)
        if live and sandbox.status in LIVE:
            self._refresh(session, sandbox, self._engine_state(sandbox))
        return sandbox

    def _engine_state(self, sandbox: Sandbox) -> dict[str, Any] | None:
        host = self.hosts.get(sandbox.host)
        try:
            return host.call(lambda c: c.api.inspect_container(sandbox.container_id))["State"]  # type: ignore[no-any-return]
        except docker.errors.NotFound:
            return None

    def _refresh(self, session: Session, sandbox: Sandbox, state: dict[str, Any] | None) -> None:
        """Bring the row in line with what the engine says; a vanished container makes the sandbox gone."""
        if state is None:
            new, exit_code = SandboxStatus.gone, sandbox.exit_code
        else:
            new = _ENGINE_STATES.get(str(state.get("Status")), SandboxStatus.exited)
            exit_code = state.get("ExitCode") if new == SandboxStatus.exited else sandbox.exit_code
            if new == SandboxStatus.exited and sandbox.status == SandboxStatus.stopped:
                new = SandboxStatus.stopped
        if new == sandbox.status:
            return
        finished = sandbox.finished_at
        if new in (SandboxStatus.exited, SandboxStatus.gone) and finished is None:
            finished = utcnow()
        # Compare-and-set: the row was read before the engine was asked, and a remove, stop or reap may have
        # been saved since; what they wrote is newer than what this reading saw, so it must not be overwritten.
        changed = session.execute(
            sa.update(Sandbox)
            .where(col(Sandbox.id) == sandbox.id, col(Sandbox.status) == sandbox.status)
            .values(status=new, exit_code=exit_code, finished_at=finished)
            .execution_options(synchronize_session=False)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            session.commit()  # nothing was written; a commit, unlike a rollback, leaves the other rows loaded
            session.refresh(sandbox)
            session.commit()
            return
        sandbox.status, sandbox.exit_code, sandbox.finished_at = new, exit_code, finished
        record(session, sandbox.id, "lifecycle", status=new.value, source="engine", exit_code=exit_code)
        self.save_ended(session, sandbox, f"the sandbox is {new.value}")

    def save_ended(self, session: Session, sandbox: Sandbox, reason: str) -> None:
        """Save a sandbox that stopped running; its pending queue items are cancelled, no one is left to act."""
        from controller.oversight.approvals import cancel_for_sandbox

        session.add(sandbox)
        session.flush()  # the write comes first, so the transaction holds the write lock for what follows
        if sandbox.status not in (SandboxStatus.running, SandboxStatus.paused):
            cancel_for_sandbox(session, sandbox.id, reason=reason)
        session.commit()

    def find(
        self,
        session: Session,
        *,
        status: SandboxStatus | None = None,
        include_removed: bool = False,
        limit: int = 200,
        offset: int = 0,
    ) -> list[Sandbox]:
        query = select(Sandbox).where(col(Sandbox.status).not_in([SandboxStatus.pooled, SandboxStatus.warming]))
        if status is not None:
            query = query.where(Sandbox.status == status)
        elif not include_removed:
            query = query.where(Sandbox.status != SandboxStatus.removed)
        query = query.order_by(col(Sandbox.created_at).desc(), col(Sandbox.id)).offset(offset).limit(limit)
        rows = list(session.exec(query))
        session.commit()
        live = [s for s in rows if s.status in LIVE]
        if live:
            states = self.engine_states({s.host for s in live})
            for sandbox in live:
                self._refresh(session, sandbox, states.get(sandbox.id))
        return rows

    def engine_states(self, host_names: set[str]) -> dict[str, dict[str, Any]]:
        """The engine state of every container of this instance on the given hosts, by sandbox id."""
        states: dict[str, dict[str, Any]] = {}
        for name in host_names:
            host = self.hosts.get(name)
            containers = host.call(
                lambda c: c.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"})
            )
            for item in containers:
                sandbox_id = (item.get("Labels") or {}).get(LABEL_SANDBOX)
                if sandbox_id:
                    states[sandbox_id] = {"Status": item.get("State"), "ExitCode": _exit_code(item)}
        return states

    # --- act --------------------------------------------------------------------------------------------

    def exec(self, *, session: Session, sandbox_id: str, request: ExecRequest) -> ExecResult:
        """Run one command; the engine is not asked for the status first (exec refuses a stopped container)."""
        sandbox = self.get(session, sandbox_id, live=False)
        if sandbox.status != SandboxStatus.running:
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; only a running sandbox takes commands")
        host = self.hosts.get(sandbox.host)
        try:
            with engine_errors(host):
                return run_exec(
                    host.client,
                    str(sandbox.container_id),
                    request.command,
                    env={**sandbox.env, **request.env},
                    workdir=request.workdir or WORKSPACE,
                    timeout_s=request.timeout_s or self.settings.exec_timeout_s,
                    max_output=self.settings.max_exec_output_bytes,
                    can_kill_on_host=host.is_local,
                )
        except docker.errors.APIError as e:
            if e.status_code not in (404, 409):
                with engine_refusals():
                    raise
            self._refresh(session, sandbox, self._engine_state(sandbox))
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; only a running sandbox takes commands") from e

    def stop(self, *, session: Session, sandbox_id: str, timeout_s: int = 5) -> Sandbox:
        sandbox = self.get(session, sandbox_id)
        if sandbox.status in (SandboxStatus.removed, SandboxStatus.gone, SandboxStatus.failed):
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; there is nothing to stop")
        host = self.hosts.get(sandbox.host)
        with engine_errors(host):
            try:
                if sandbox.status == SandboxStatus.paused:
                    host.client.api.unpause(sandbox.container_id)
                host.client.api.stop(sandbox.container_id, timeout=timeout_s)
            except docker.errors.NotFound:
                self._refresh(session, sandbox, None)
                return sandbox
        if sandbox.status != SandboxStatus.stopped:
            sandbox.status = SandboxStatus.stopped
            sandbox.finished_at = sandbox.finished_at or utcnow()
            record(session, sandbox.id, "lifecycle", status="stopped", source="stop")
            self.save_ended(session, sandbox, "the sandbox was stopped")
        return sandbox

    def pause(self, *, session: Session, sandbox_id: str, reason: str) -> Sandbox:
        """Freeze every process of the sandbox (docker pause); it keeps its memory and its place."""
        return self._freeze(session, sandbox_id, reason, frozen=True)

    def resume(self, *, session: Session, sandbox_id: str, reason: str) -> Sandbox:
        return self._freeze(session, sandbox_id, reason, frozen=False)

    def _freeze(self, session: Session, sandbox_id: str, reason: str, *, frozen: bool) -> Sandbox:
        sandbox = self.get(session, sandbox_id, live=False)
        wanted, needed = (
            (SandboxStatus.paused, SandboxStatus.running) if frozen else (SandboxStatus.running, SandboxStatus.paused)
        )
        if sandbox.status == wanted:
            return sandbox
        if sandbox.status != needed:
            verb = "paused" if frozen else "resumed"
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; only a {needed.value} sandbox can be {verb}")
        host = self.hosts.get(sandbox.host)
        with engine_errors(host), engine_refusals():
            (host.client.api.pause if frozen else host.client.api.unpause)(sandbox.container_id)
        sandbox.status = wanted
        record(session, sandbox.id, "lifecycle", status=wanted.value, source=reason)
        session.add(sandbox)
        session.commit()
        return sandbox

    def remove(
        self, *, session: Session, sandbox_id: str, keep_volume: bool | None = None, reason: str = "remove"
    ) -> Sandbox:
        sandbox = self.get(session, sandbox_id, live=False)
        if sandbox.status == SandboxStatus.removed:
            raise SandboxNotFound(sandbox_id)
        keep = sandbox.keep_volume if keep_volume is None else keep_volume
        self.destroy(self.hosts.get(sandbox.host), sandbox, keep_volume=keep)
        sandbox.status = SandboxStatus.removed
        sandbox.token_hash = None
        sandbox.keep_volume = keep
        sandbox.finished_at = sandbox.finished_at or utcnow()
        record(session, sandbox.id, "lifecycle", status="removed", source=reason, volume_kept=keep)
        self.save_ended(session, sandbox, "the sandbox was removed")
        return sandbox

    def enqueue(self, task: str, args: list[Any]) -> None:
        if self._enqueue is not None:
            self._enqueue(task, args)


def _exit_code(item: dict[str, Any]) -> int | None:
    status = str(item.get("Status", ""))
    if status.startswith("Exited (") and ")" in status:
        try:
            return int(status[len("Exited (") : status.index(")")])
        except ValueError:
            return None
    return None
