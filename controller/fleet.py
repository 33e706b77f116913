"""The collaborators one controller process works with, built once from settings and handed to the edges.

The API app, the runtime gateway, the Celery worker and the CLI each build one `Fleet`; tests build one on their
own home, database and Redis database. Nothing here reaches a service until it is first used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from controller.config import Settings, instance_id
from controller.db import engine_for
from controller.errors import RedisUnavailable
from controller.events.bus import EventBus, install
from controller.models import Host
from controller.sandboxes.hosts import DockerHosts
from controller.sandboxes.service import SandboxService


@dataclass
class Fleet:
    settings: Settings
    send_task: Any = field(default=None, repr=False)

    @cached_property
    def engine(self) -> Engine:
        return engine_for(self.settings.db_url)

    @cached_property
    def instance(self) -> str:
        return instance_id(self.settings)

    @cached_property
    def hosts(self) -> DockerHosts:
        hosts = DockerHosts(self.settings.docker_url, lookup=self._host_url)
        with Session(self.engine) as session:
            for row in session.exec(select(Host)):
                hosts.add(row.name, row.url)
        return hosts

    def _host_url(self, name: str) -> str | None:
        with Session(self.engine) as session:
            row = session.exec(select(Host).where(Host.name == name)).first()
            return row.url if row else None

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2)

    @cached_property
    def bus(self) -> EventBus:
        """Where events go live (Redis Streams) and for history (the database); installed for this process."""
        bus = EventBus(self.redis, self.engine, self.instance)
        install(bus)
        return bus

    @cached_property
    def sandboxes(self) -> SandboxService:
        return SandboxService(settings=self.settings, hosts=self.hosts, instance=self.instance, enqueue=self.enqueue)

    def enqueue(self, task: str, args: list[Any], **options: Any) -> str:
        """Hand slow work to the Celery workers (by task name, so the API never imports the worker)."""
        if self.send_task is None:
            from controller.worker.celery_app import make_celery

            self.send_task = make_celery(self.settings).send_task
        # Give up quickly when Redis is away: a request must not hang on it. Pool top-ups and brokered actions are
        # picked up again by beat's sweeps; a webhook notification that could not be queued is lost (logged).
        options.setdefault("retry_policy", {"max_retries": 2, "interval_start": 0, "interval_step": 0.2})
        try:
            return str(self.send_task(task, args=args, **options).id)
        except Exception as e:  # kombu raises OperationalError & co. when the broker is away
            raise RedisUnavailable(self.settings.redis_url, e) from e

    def ping_redis(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as e:
            raise RedisUnavailable(self.settings.redis_url, e) from e

    def worker_count(self) -> int:
        """Celery workers of this instance seen alive in the last 30 s."""
        try:
            return sum(1 for _ in self.redis.scan_iter(f"fleetgate:{self.instance}:workers:*"))
        except redis.RedisError:
            return 0

    def task_state(self, task_id: str) -> dict[str, Any]:
        from celery.result import AsyncResult

        from controller.worker.celery_app import make_celery

        result = AsyncResult(task_id, app=make_celery(self.settings))
        ready = result.ready()
        return {
            "id": task_id,
            "state": result.state,
            "result": result.result if ready and result.successful() else None,
            "error": str(result.result) if ready and not result.successful() else None,
        }

    def close(self) -> None:
        self.hosts.close()
        if "redis" in self.__dict__:
            self.redis.close()
