"""The composition root: what one process works with, built once at start-up and handed to the edges.

The API app, the runtime gateway, the Celery worker and the CLI each build one `Fleet` from settings (tests build
one on their own home, database and Redis database, or with an in-memory engine and no Redis at all). Only the
edges hold it: the flows and the domain packages get their collaborators in their constructors. Making one
connects to nothing; the Docker engines and Redis are reached on first use.

    Fleet.events    where committed events go: EventBus (Redis Streams + history) or StoredEvents (history only)
    Fleet.tasks     where slow work goes: CeleryTasks
    Fleet.hosts     the container engines by host name
    Fleet.sandboxes / upkeep / decisions / runtime / outbox / admin    the use cases (controller/flows)
"""

from __future__ import annotations

import redis
from sqlmodel import Session, select

from controller.config import Settings, instance_id
from controller.db import engine_for
from controller.errors import RedisUnavailable
from controller.events.bus import EventBus, EventSink, StoredEvents
from controller.events.wakeups import Publisher
from controller.flows.admin import AdminFlows
from controller.flows.decisions import DecisionFlows
from controller.flows.effects import EffectRunner, TaskQueue, WakePublisher
from controller.flows.outbox import OutboxFlows
from controller.flows.runtime import RuntimeFlows
from controller.flows.sandboxes import SandboxFlows
from controller.flows.unit import Transactions
from controller.flows.upkeep import Upkeep
from controller.models import Host
from controller.names import Keys
from controller.sandboxes.channel import ExecChannel
from controller.sandboxes.credentials import Credentials
from controller.sandboxes.hosts import Connect, Hosts
from controller.sandboxes.provision import Provisioner
from controller.sandboxes.workspaces import LoopWorkspaces, WorkspaceStore
from controller.taskqueue import CeleryTasks


def event_bus(settings: Settings) -> EventBus:
    """A process's event bus: committed events go live on Redis Streams and are kept for history. The controller
    and the worker make one each at start-up and hand it to their `Fleet` (and the gateway's output route)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    return EventBus(client, engine_for(settings.db_url), Keys(instance_id(settings)))


class Fleet:
    def __init__(
        self,
        settings: Settings,
        *,
        events: EventSink | None = None,
        tasks: TaskQueue | None = None,
        wake: WakePublisher | None = None,
        connect: Connect | None = None,
        workspaces: WorkspaceStore | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance_id(settings)
        self.keys = Keys(self.instance)
        self.db = engine_for(settings.db_url)
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.events = events if events is not None else StoredEvents(self.db)
        self.tasks = tasks if tasks is not None else CeleryTasks(settings)
        self.hosts = Hosts(settings.docker_url, connect=connect, lookup=self._host_url, known=self._known_hosts)
        self.tx = Transactions(self.db, self.events)
        if workspaces is None:
            workspaces = LoopWorkspaces(settings.workspaces_dir, settings.sandbox_uid)
        provisioner = Provisioner(
            instance=self.instance,
            uid=settings.sandbox_uid,
            credentials=Credentials(settings.sandboxes_dir, settings.sandbox_uid),
            gateway_dir=settings.gateway_dir,
            workspaces=workspaces,
            runtime=settings.sandbox_runtime,
        )
        self.provisioner = provisioner
        self.workspaces = provisioner.workspaces
        self.channel = ExecChannel()
        self.sandboxes = SandboxFlows(
            tx=self.tx, hosts=self.hosts, provisioner=provisioner, settings=settings, channel=self.channel
        )
        self.upkeep = Upkeep(tx=self.tx, hosts=self.hosts, sandboxes=self.sandboxes)
        self.decisions = DecisionFlows(tx=self.tx)
        self.runtime = RuntimeFlows(tx=self.tx, settings=settings)
        self.outbox = OutboxFlows(tx=self.tx, settings=settings, hosts=self.hosts, provisioner=provisioner)
        self.admin = AdminFlows(
            tx=self.tx, hosts=self.hosts, provisioner=provisioner, upkeep=self.upkeep, settings=settings
        )
        self.publisher = wake if wake is not None else Publisher(self.redis, self.keys)
        self.tx.apply = EffectRunner(tasks=self.tasks, wake=self.publisher, lifecycle=self.sandboxes).apply

    def _host_url(self, name: str) -> str | None:
        with Session(self.db) as session:
            row = session.exec(select(Host).where(Host.name == name)).first()
            return row.url if row else None

    def _known_hosts(self) -> list[tuple[str, str]]:
        with Session(self.db) as session:
            return [(row.name, row.url) for row in session.exec(select(Host))]

    def ping_redis(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as e:
            raise RedisUnavailable(self.settings.redis_url, e) from e

    def worker_count(self) -> int:
        """Celery workers of this instance seen alive in the last 30 s."""
        try:
            return sum(1 for _ in self.redis.scan_iter(self.keys.workers))
        except redis.RedisError:
            return 0

    def close(self) -> None:
        self.hosts.close()
        self.redis.close()
