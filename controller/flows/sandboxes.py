"""Sandbox use cases: create (cold or from the warm pool), read with the engine's live status, exec, browse files,
stop, pause, resume, remove.

Each change is one write transaction holding the row's move, its lifecycle event, the cancellation of the
sandbox's pending queue items when it ends, and its audit entry; the engine is called between transactions,
never inside one. A create either completes or leaves nothing behind: no row, no container, no volume, no
credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from controller.config import Settings
from controller.effects import refill_pool
from controller.errors import Conflict, EngineError, SandboxNotFound, Unavailable
from controller.flows.unit import Transactions, Tx
from controller.models import ExecRequest, ExecResult, Sandbox, SandboxCreate, SandboxStatus, User, utcnow
from controller.oversight import audit
from controller.oversight.approvals import cancel_for_sandbox, effects_of
from controller.oversight.policy_store import compile_policy
from controller.sandboxes import files, lifecycle, pool
from controller.sandboxes.channel import ChannelLost, ExecChannel, capped
from controller.sandboxes.engine import ContainerMissing, ContainerState, Engine, NotRunning
from controller.sandboxes.hosts import LOCAL, Hosts
from controller.sandboxes.lifecycle import ENDED, LIVE, Plan
from controller.sandboxes.provision import Provisioner
from controller.sandboxes.spec import LABEL_INSTANCE, LABEL_SANDBOX, WORKSPACE

log = logging.getLogger(__name__)
REFILL_AFTER_CLAIM_S = 1.0
S = SandboxStatus
# What the engine's own report of a change is called in the audit log (the agent exited, someone ran docker rm).
OBSERVED = {
    S.exited: "sandbox.exited",
    S.gone: "sandbox.gone",
    S.stopped: "sandbox.stopped",
    S.paused: "sandbox.paused",
    S.running: "sandbox.resumed",
}


def change(
    t: Tx,
    sandbox: Sandbox,
    to: SandboxStatus,
    *,
    actor: str,
    event: str,
    source: str,
    why: str,
    changes: dict[str, Any] | None = None,
    over: Collection[SandboxStatus] | None = None,
    **data: Any,
) -> bool:
    """One lifecycle change in the caller's transaction: the row (compare-and-set), its event, the cancellation of
    pending queue items when the sandbox ends (nobody is left to act on them; `why` tells their agents), and its
    audit entry. False when the row had moved on meanwhile (nothing is written)."""
    if not lifecycle.move(t.session, sandbox, to, source=source, changes=changes, over=over, **data):
        return False
    if to in ENDED:
        t.effects += effects_of(cancel_for_sandbox(t.session, sandbox.id, reason=why))
    audit.append(t.session, actor=actor, event=event, subject=f"sandbox:{sandbox.id}", source=source, **data)
    return True


class SandboxFlows:
    def __init__(
        self,
        *,
        tx: Transactions,
        hosts: Hosts,
        provisioner: Provisioner,
        settings: Settings,
        channel: ExecChannel | None = None,
    ) -> None:
        self.tx = tx
        self.hosts = hosts
        self.provisioner = provisioner
        self.settings = settings
        self.channel = channel if channel is not None else ExecChannel()  # unbound: every exec is docker exec
        self.instance = provisioner.instance

    # --- create ---------------------------------------------------------------------------------------------

    def create(self, request: SandboxCreate, *, owner: User | None) -> Sandbox:
        """Create and start a sandbox; from the template's warm pool when one is ready and fits."""
        plan = self.plan(request)
        if plan.fits_pool(self.settings):
            claimed = self._claim(plan, owner)
            if claimed is not None:
                return claimed
        return self.make(plan, owner=owner)

    def plan(self, request: SandboxCreate) -> Plan:
        with self.tx.read() as session:
            template = lifecycle.find_template(session, request.template) if request.template else None
            services = lifecycle.service_env(session)
        engine = self.hosts.get(request.host or (template.host if template else LOCAL))
        resolved = lifecycle.plan(
            request=request, template=template, engine=engine, settings=self.settings, services=services
        )
        if resolved.policy is not None:
            compile_policy(resolved.policy, source="sandbox policy")
        return resolved

    def make(self, plan: Plan, *, owner: User | None, pooled: bool = False) -> Sandbox:
        """A cold create: the row first, then credentials, volume and container, then the row says it runs."""
        engine = self.hosts.get(plan.host)
        self.provisioner.require_image(engine, plan.image)
        sandbox = lifecycle.new_row(plan, owner=owner, instance=self.instance, pooled=pooled)
        with self.tx.write() as t:
            t.session.add(sandbox)
        try:
            secret = None if pooled else lifecycle.issue_token(sandbox, plan.ttl_s)
            document = None if secret is None else lifecycle.credentials_document(sandbox, secret, self.settings)
            self.provisioner.provision(engine, sandbox, template=plan.template_name, credentials=document)
            with self.tx.write() as t:
                # A copy in the session: a rollback expires what the session holds, and `discard` still needs this
                made = t.session.merge(sandbox)
                lifecycle.started(t.session, made, source="create")
                if not pooled:
                    self._created(t, made, plan, owner, source="create")
        except BaseException:
            self.discard(engine, sandbox)
            raise
        return made

    def _created(self, t: Tx, sandbox: Sandbox, plan: Plan, owner: User | None, *, source: str) -> None:
        audit.append(
            t.session,
            actor=owner.name if owner else "system",
            event="sandbox.created",
            subject=f"sandbox:{sandbox.id}",
            source=source,
            image=sandbox.image,
            host=sandbox.host,
            template=plan.template_name,
            policy=plan.policy,
            resources={"cpus": sandbox.cpus, "memory_mb": sandbox.memory_mb, "pids": sandbox.pids},
        )

    def _claim(self, plan: Plan, owner: User | None) -> Sandbox | None:
        """Take a ready sandbox from the plan's template pool and configure it, or None when none can be had."""
        assert plan.template is not None
        assert plan.template.id is not None
        claimed = None
        with self.tx.write() as t:
            t.effects.append(refill_pool(plan.template.id, delay_s=REFILL_AFTER_CLAIM_S))
            for sandbox_id in pool.candidates(t.session, plan.template.id):
                if pool.take(t.session, sandbox_id, owner):
                    claimed = t.session.get(Sandbox, sandbox_id, populate_existing=True)
                    break
        return None if claimed is None else self._configure(claimed, plan, owner)

    def _configure(self, sandbox: Sandbox, plan: Plan, owner: User | None) -> Sandbox | None:
        """Give the claimed sandbox its own token, env, command and TTL; if anything fails, it is destroyed rather
        than handed out (fail closed) and the caller makes a cold one."""
        engine = self.hosts.get(sandbox.host)
        try:
            state = engine.state(str(sandbox.container_id))
            if state is None or state.status != "running":
                raise Conflict(f"pooled container is {state.status if state else 'gone'}")
            lifecycle.take_plan(sandbox, plan)
            secret = lifecycle.issue_token(sandbox, plan.ttl_s)
            self.provisioner.credentials.write(
                sandbox.id, lifecycle.credentials_document(sandbox, secret, self.settings)
            )
            self.channel.expect(sandbox.id)  # its supervisor, already up, starts polling as it reads these
            with self.tx.write() as t:
                claimed = t.session.merge(sandbox)  # a copy: see `make`
                claimed.created_at = claimed.started_at = utcnow()
                lifecycle.started(t.session, claimed, source="pool")
                self._created(t, claimed, plan, owner, source="pool")
        except Exception as e:  # any failure: this one is not handed out
            log.warning("claim of pooled sandbox %s failed closed: %s", sandbox.id, e)
            self.discard(engine, sandbox)
            return None
        return claimed

    def discard(self, engine: Engine, sandbox: Sandbox) -> None:
        """Take away a sandbox that never was one (a failed create, a pool entry): its engine side, then its row."""
        try:
            self.provisioner.destroy(engine, sandbox)
        finally:
            with self.tx.write() as t:
                t.session.execute(sa.delete(Sandbox).where(col(Sandbox.id) == sandbox.id))

    # --- read -----------------------------------------------------------------------------------------------

    def get(self, sandbox_id: str, *, live: bool = True) -> Sandbox:
        """One sandbox; with `live`, brought in line with what its engine says first."""
        with self.tx.read() as session:
            sandbox = lifecycle.visible(session, sandbox_id)
        if live and sandbox.status in LIVE:
            self.observe(sandbox, self.hosts.get(sandbox.host).state(str(sandbox.container_id)))
        return sandbox

    def find(
        self, *, status: SandboxStatus | None = None, include_removed: bool = False, limit: int = 200, offset: int = 0
    ) -> list[Sandbox]:
        """Sandboxes newest first, with their live status (one engine listing per host, not one call each)."""
        with self.tx.read() as session:
            rows = lifecycle.listed(session, status=status, include_removed=include_removed, limit=limit, offset=offset)
        live = [s for s in rows if s.status in LIVE]
        if live:
            states = self.engine_states({s.host for s in live})
            for sandbox in live:
                self.observe(sandbox, states.get(sandbox.id))
        return rows

    def engine_states(self, host_names: set[str]) -> dict[str, ContainerState]:
        """The state of every container of this instance on these hosts, by sandbox id."""
        states: dict[str, ContainerState] = {}
        for name in host_names:
            for info in self.hosts.get(name).containers({LABEL_INSTANCE: self.instance}):
                sandbox_id = info.labels.get(LABEL_SANDBOX)
                if sandbox_id:
                    states[sandbox_id] = info.state
        return states

    def observe(self, sandbox: Sandbox, state: ContainerState | None) -> None:
        """Save what the engine reports (a vanished container makes the sandbox gone), unless the row moved on."""
        new, exit_code = lifecycle.observed(sandbox, state)
        if new == sandbox.status:
            return
        with self.tx.write() as t:
            change(
                t,
                sandbox,
                new,
                actor="engine",
                event=OBSERVED[new],
                source="engine",
                why=f"the sandbox is {new.value}",
                changes={"exit_code": exit_code},
                exit_code=exit_code,
            )

    # --- act ------------------------------------------------------------------------------------------------

    def exec(self, sandbox_id: str, request: ExecRequest) -> ExecResult:
        """Run one command; the engine is not asked for the status first (exec refuses a stopped container)."""
        sandbox = self.get(sandbox_id, live=False)
        if sandbox.status != S.running:
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; only a running sandbox takes commands")
        engine = self.hosts.get(sandbox.host)
        env, workdir = {**sandbox.env, **request.env}, request.workdir or WORKSPACE
        timeout_s, limit = request.timeout_s or self.settings.exec_timeout_s, self.settings.max_exec_output_bytes
        job = {"command": request.command, "env": env, "workdir": workdir, "timeout_s": timeout_s, "max_output": limit}
        try:
            answer = self.channel.run(sandbox.id, job, timeout_s, alive=lambda: self._running(engine, sandbox))
        except ChannelLost as e:
            self.observe(sandbox, engine.state(str(sandbox.container_id)))
            if sandbox.status != S.running:
                raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; the command ended with it") from e
            raise EngineError(str(e)) from e
        if answer is not None:
            return capped(ExecResult.model_validate(answer), limit)
        try:
            return engine.exec(
                str(sandbox.container_id),
                request.command,
                env=env,
                workdir=workdir,
                timeout_s=timeout_s,
                max_output=limit,
            )
        except (ContainerMissing, NotRunning) as e:
            self.observe(sandbox, engine.state(str(sandbox.container_id)))
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; only a running sandbox takes commands") from e

    @staticmethod
    def _running(engine: Engine, sandbox: Sandbox) -> bool:
        """Whether the sandbox's container still runs; an engine that does not answer is no proof it stopped."""
        try:
            state = engine.state(str(sandbox.container_id))
        except (Unavailable, EngineError):
            return True
        return state is not None and state.status in ("running", "paused")

    def workspace(self, sandbox_id: str, command: list[str]) -> dict[str, Any]:
        """List a workspace folder or read a file (`files.listing` / `files.reading`) as the sandbox's user."""
        request = ExecRequest(command=command, timeout_s=files.TIMEOUT_S)
        return files.answer(command, self.exec(sandbox_id, request))

    def stop(self, sandbox_id: str, *, actor: str, reason: str = "stop", timeout_s: int = 5) -> Sandbox:
        sandbox = self.get(sandbox_id)
        if sandbox.status not in LIVE:
            raise Conflict(f"sandbox {sandbox_id} is {sandbox.status}; there is nothing to stop")
        engine = self.hosts.get(sandbox.host)
        try:
            if sandbox.status == S.paused:
                engine.unpause(str(sandbox.container_id))
            engine.stop(str(sandbox.container_id), timeout_s)
        except ContainerMissing:
            self.observe(sandbox, None)
            return sandbox
        with self.tx.write() as t:
            change(
                t,
                sandbox,
                S.stopped,
                actor=actor,
                event="sandbox.stopped",
                source=reason,
                why="the sandbox was stopped",
                over=LIVE,
            )
        return sandbox

    def pause(self, sandbox_id: str, *, actor: str, reason: str) -> Sandbox:
        """Freeze every process of the sandbox (docker pause); it keeps its memory and its place."""
        return self._freeze(sandbox_id, actor=actor, reason=reason, to=S.paused, needs=S.running)

    def resume(self, sandbox_id: str, *, actor: str, reason: str) -> Sandbox:
        return self._freeze(sandbox_id, actor=actor, reason=reason, to=S.running, needs=S.paused)

    def _freeze(self, sandbox_id: str, *, actor: str, reason: str, to: SandboxStatus, needs: SandboxStatus) -> Sandbox:
        sandbox = self.get(sandbox_id)
        if sandbox.status == to:
            return sandbox
        verb = "paused" if to == S.paused else "resumed"
        lifecycle.require(sandbox, needs, doing=verb)
        engine = self.hosts.get(sandbox.host)
        (engine.pause if to == S.paused else engine.unpause)(str(sandbox.container_id))
        with self.tx.write() as t:
            change(t, sandbox, to, actor=actor, event=f"sandbox.{verb}", source=reason, why=reason)
        return sandbox

    def remove(
        self,
        sandbox_id: str,
        *,
        actor: str,
        keep_volume: bool | None = None,
        reason: str = "remove",
        event: str = "sandbox.removed",
    ) -> Sandbox:
        """Remove the container and, unless kept, the workspace volume; the row stays, as `removed`."""
        sandbox = self.get(sandbox_id, live=False)
        if sandbox.status == S.removed:
            raise SandboxNotFound(sandbox_id)
        keep = sandbox.keep_volume if keep_volume is None else keep_volume
        self.provisioner.destroy(self.hosts.get(sandbox.host), sandbox, keep_volume=keep)
        self.channel.forget(sandbox.id)
        with self.tx.write() as t:
            change(
                t,
                sandbox,
                S.removed,
                actor=actor,
                event=event,
                source=reason,
                why="the sandbox was removed",
                changes={"keep_volume": keep},
                over=[s for s in S if s != S.removed],
                volume_kept=keep,
            )
        return sandbox
