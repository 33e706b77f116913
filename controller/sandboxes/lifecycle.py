"""The rules of a sandbox's life, on its database row: planning a create, the status it moves through, and
what each move writes. Functions here take the caller's session and never commit; the engine is not touched
(that is `provision.py`), and nothing here knows about approvals (the flows cancel those).

    creating --> running <--> paused        warming --> pooled --(claimed)--> creating
                    |            |
                    v            v
          exited / stopped / gone  --> removed
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret
from controller.config import Settings
from controller.errors import Conflict, Invalid, SandboxNotFound, TemplateNotFound
from controller.events.store import emit
from controller.models import Sandbox, SandboxCreate, SandboxStatus, Service, ServiceKind, Template, User, utcnow
from controller.names import EventKind
from controller.sandboxes.engine import ContainerState, Engine
from controller.sandboxes.spec import engine_name

LIVE = (SandboxStatus.running, SandboxStatus.paused, SandboxStatus.exited, SandboxStatus.stopped)
ENDED = (SandboxStatus.exited, SandboxStatus.stopped, SandboxStatus.gone, SandboxStatus.removed)
HIDDEN = (SandboxStatus.pooled, SandboxStatus.warming)
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
    host: str
    cpus: float
    memory_mb: int
    pids: int
    disk_mb: int
    env: dict[str, str]
    command: list[str] | None
    ttl_s: int | None
    keep_volume: bool
    policy: str | dict[str, Any] | None = None
    budget: dict[str, int] | None = None

    @property
    def template_name(self) -> str | None:
        return self.template.name if self.template else None

    def fits_pool(self, settings: Settings) -> bool:
        """Whether a warm sandbox of the plan's template is exactly what this plan asks for."""
        t = self.template
        return (
            t is not None
            and t.pool_size > 0
            and self.image == t.image
            and self.host == t.host
            and self.cpus == (t.cpus or settings.default_cpus)
            and self.memory_mb == (t.memory_mb or settings.default_memory_mb)
            and self.pids == (t.pids or settings.default_pids)
            and self.disk_mb == (t.disk_mb or settings.default_disk_mb)
        )


def find_template(session: Session, name: str) -> Template:
    template = session.exec(select(Template).where(Template.name == name)).first()
    if template is None:
        raise TemplateNotFound(name)
    return template


SERVICE_PORT = "http://127.0.0.1:7070"
PLACEHOLDER_KEY = "fleetgate-placeholder-the-controller-adds-the-real-key"  # not a secret, by design
_MODEL_ENV = (
    (ServiceKind.anthropic, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    (ServiceKind.openai, "OPENAI_BASE_URL", "OPENAI_API_KEY"),
)


def service_env(session: Session) -> dict[str, str]:
    """Model SDKs find their service by themselves: ANTHROPIC_BASE_URL / OPENAI_BASE_URL point at the sandbox's
    service door (the service named like its kind, else the first by name) with a placeholder key."""
    rows = session.exec(select(Service).order_by(col(Service.name))).all()
    env: dict[str, str] = {}
    for kind, base_url, key in _MODEL_ENV:
        names = [row.name for row in rows if row.kind == kind]
        if names:
            env[base_url] = f"{SERVICE_PORT}/{kind.value if kind.value in names else names[0]}"
            env[key] = PLACEHOLDER_KEY
    return env


def plan(
    *,
    request: SandboxCreate,
    template: Template | None,
    engine: Engine,
    settings: Settings,
    services: dict[str, str] | None = None,
) -> Plan:
    """Resolve a create request; raises Invalid with what to change. `services`: the env of the model services."""
    if not engine.is_local:
        # The runtime socket and each sandbox's credentials are bind-mounted from this machine, which a remote
        # engine cannot see: a sandbox there would never reach its controller. Refuse rather than half-work.
        raise Invalid(
            f"host {engine.name!r} ({engine.url}) is remote; sandboxes run on engines that share this machine's "
            f"files for now (the runtime relay for remote engines is not built yet)"
        )
    res, s, t = request.resources, settings, template
    resolved = Plan(
        template=t,
        image=request.image or (t.image if t else s.default_image),
        host=engine.name,
        cpus=res.cpus or (t.cpus if t and t.cpus else s.default_cpus),
        memory_mb=res.memory_mb or (t.memory_mb if t and t.memory_mb else s.default_memory_mb),
        pids=res.pids or (t.pids if t and t.pids else s.default_pids),
        disk_mb=res.disk_mb or (t.disk_mb if t and t.disk_mb else s.default_disk_mb),
        env={**(services or {}), **(t.env if t else {}), **request.env},
        command=request.command or (t.command if t else None),
        ttl_s=request.ttl_s or (t.ttl_s if t else None),
        keep_volume=request.keep_volume,
        policy=request.policy,
        budget=request.budget.model_dump(exclude_none=True) if request.budget else None,
    )
    check_limits(
        engine,
        settings,
        cpus=resolved.cpus,
        memory_mb=resolved.memory_mb,
        ttl_s=resolved.ttl_s,
        disk_mb=resolved.disk_mb,
    )
    return resolved


def check_limits(
    engine: Engine,
    settings: Settings,
    *,
    cpus: float | None,
    memory_mb: int | None,
    ttl_s: int | None,
    disk_mb: int | None = None,
) -> None:
    """Limits a sandbox on `engine` can be given (also checked when a template is saved, not at its first use)."""
    facts = engine.facts()
    if cpus is not None and cpus > facts.ncpu:
        raise Invalid(f"resources.cpus {cpus:g} is more than host {engine.name!r} has ({facts.ncpu})")
    if memory_mb is not None and facts.mem_bytes and memory_mb * (1 << 20) > facts.mem_bytes:
        raise Invalid(
            f"resources.memory_mb {memory_mb} is more than host {engine.name!r} has ({facts.mem_bytes >> 20} MiB)"
        )
    if ttl_s is not None and ttl_s > settings.max_ttl_s:
        raise Invalid(f"ttl_s {ttl_s} is longer than the maximum {settings.max_ttl_s} s")
    if disk_mb is not None and engine.is_local and settings.home.exists():
        disk = shutil.disk_usage(settings.home).total >> 20
        if disk_mb > disk:
            raise Invalid(f"resources.disk_mb {disk_mb} is more than the disk of {settings.home} holds ({disk} MiB)")


def new_row(plan: Plan, *, owner: User | None, instance: str, pooled: bool) -> Sandbox:
    """The row of a sandbox about to be made (a pool entry takes its env, command and policy when claimed)."""
    sandbox_id = new_sandbox_id()
    return Sandbox(
        id=sandbox_id,
        status=SandboxStatus.warming if pooled else SandboxStatus.creating,
        host=plan.host,
        image=plan.image,
        template_id=plan.template.id if plan.template else None,
        owner_id=owner.id if owner else None,
        cpus=plan.cpus,
        memory_mb=plan.memory_mb,
        pids=plan.pids,
        disk_mb=plan.disk_mb,
        env={} if pooled else plan.env,
        command=None if pooled else plan.command,
        policy=None if pooled else plan.policy,
        budget=None if pooled else plan.budget,
        keep_volume=plan.keep_volume,
        volume=engine_name(instance, sandbox_id),
    )


def take_plan(sandbox: Sandbox, plan: Plan) -> None:
    """A claimed pool entry becomes what the create asked for."""
    sandbox.env = plan.env
    sandbox.command = plan.command
    sandbox.keep_volume = plan.keep_volume
    sandbox.policy = plan.policy
    sandbox.budget = plan.budget


def issue_token(sandbox: Sandbox, ttl_s: int | None) -> str:
    """A new secret for the sandbox's runtime (only its hash is kept) and the deadline its TTL sets."""
    secret = new_secret(SANDBOX_TOKEN_PREFIX)
    sandbox.token_hash = hash_token(secret)
    sandbox.ttl_s = ttl_s
    sandbox.expires_at = utcnow() + timedelta(seconds=ttl_s) if ttl_s else None
    return secret


def credentials_document(sandbox: Sandbox, secret: str, settings: Settings) -> dict[str, Any]:
    """What the runtime inside reads: who it is, its token, what to run."""
    return {
        "sandbox_id": sandbox.id,
        "token": secret,
        "socket": "/run/fleetgate/runtime.sock",
        "command": sandbox.command,
        "env": sandbox.env,
        "heartbeat_s": settings.heartbeat_s,
    }


def started(session: Session, sandbox: Sandbox, *, source: str) -> None:
    """The container runs: a pool entry is ready, anything else is handed to its owner."""
    if sandbox.status == SandboxStatus.warming:
        sandbox.status = SandboxStatus.pooled
    else:
        sandbox.status = SandboxStatus.running
        emit(session, sandbox.id, EventKind.LIFECYCLE, status="running", source=source)
    sandbox.started_at = sandbox.started_at or utcnow()
    session.add(sandbox)


def visible(session: Session, sandbox_id: str) -> Sandbox:
    """A sandbox people can see (pool entries are not); SandboxNotFound otherwise."""
    sandbox = session.get(Sandbox, sandbox_id)
    if sandbox is None or sandbox.status in HIDDEN:
        raise SandboxNotFound(sandbox_id)
    return sandbox


def require(sandbox: Sandbox, *allowed: SandboxStatus, doing: str) -> None:
    if sandbox.status not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise Conflict(f"sandbox {sandbox.id} is {sandbox.status}; only a {names} sandbox can be {doing}")


def move(
    session: Session,
    sandbox: Sandbox,
    to: SandboxStatus,
    *,
    source: str,
    changes: dict[str, Any] | None = None,
    over: Collection[SandboxStatus] | None = None,
    **event: Any,
) -> bool:
    """Move the sandbox to `to` (with other column `changes`) and emit the lifecycle event, by compare-and-set:
    only from the status it was read in, or, for a person's stop or remove, from any status in `over`.

    The row may have been read before a slow engine call, and a remove, stop or reap saved since: what they wrote
    is newer than what this reading saw, so it must not be overwritten. Returns False (and reloads the row) when
    someone else moved it first.
    """
    if sandbox.status == to:
        return False
    current = col(Sandbox.status).in_(list(over)) if over is not None else col(Sandbox.status) == sandbox.status
    values: dict[str, Any] = {"status": to}
    if to in ENDED:
        values["finished_at"] = sandbox.finished_at or utcnow()
    if to in (SandboxStatus.gone, SandboxStatus.removed):
        values["token_hash"] = None
    values.update(changes or {})
    changed = session.execute(
        sa.update(Sandbox)
        .where(col(Sandbox.id) == sandbox.id, current)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        _reload(session, sandbox)
        return False
    for key, value in values.items():
        setattr(sandbox, key, value)
    emit(session, sandbox.id, EventKind.LIFECYCLE, status=to.value, source=source, **event)
    return True


def _reload(session: Session, sandbox: Sandbox) -> None:
    """Give the caller's copy of the row what is saved now (it may belong to no session: it was read earlier)."""
    if sandbox in session:
        session.refresh(sandbox)
        return
    saved = session.get(Sandbox, sandbox.id, populate_existing=True)
    for name in Sandbox.model_fields:
        set_committed_value(sandbox, name, getattr(saved, name) if saved else getattr(sandbox, name))


def observed(sandbox: Sandbox, state: ContainerState | None) -> tuple[SandboxStatus, int | None]:
    """The status the engine's report implies (a vanished container: gone), and the exit code it gives."""
    if state is None:
        return SandboxStatus.gone, sandbox.exit_code
    new = _ENGINE_STATES.get(state.status, SandboxStatus.exited)
    if new == SandboxStatus.exited and sandbox.status == SandboxStatus.stopped:
        return SandboxStatus.stopped, sandbox.exit_code
    return new, state.exit_code if new == SandboxStatus.exited else sandbox.exit_code


def listed(
    session: Session,
    *,
    status: SandboxStatus | None = None,
    include_removed: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> list[Sandbox]:
    query = select(Sandbox).where(col(Sandbox.status).not_in(HIDDEN))
    if status is not None:
        query = query.where(Sandbox.status == status)
    elif not include_removed:
        query = query.where(Sandbox.status != SandboxStatus.removed)
    query = query.order_by(col(Sandbox.created_at).desc(), col(Sandbox.id)).offset(offset).limit(limit)
    return list(session.exec(query))


def expired(session: Session) -> list[str]:
    """Sandboxes whose TTL has run out."""
    return list(
        session.exec(select(Sandbox.id).where(col(Sandbox.expires_at) < utcnow(), col(Sandbox.status).in_(LIVE)))
    )
