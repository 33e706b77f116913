"""Celery, from both sides: the app's configuration (Redis as broker and result store, one queue per controller
instance, beat for the clocks) and `CeleryTasks`, how the API and the gateway hand work to the worker.

The worker itself is `controller.worker` (`celery -A controller.worker.celery_app worker -B`); senders never
import it: they send by task name (`names.Task`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from controller.config import Settings, instance_id
from controller.errors import RedisUnavailable
from controller.names import Task, task_queue


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "fleetgate",
        broker=settings.redis_url,
        backend=settings.redis_url,
        include=["controller.worker.tasks"],
    )
    app.conf.update(
        task_default_queue=task_queue(instance_id(settings)),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=3600,
        # Most tasks run on the clock or are fire-and-forget; only an image build's outcome is asked for
        # (GET /api/v1/images/builds/{id}). Keeping every result filled Redis with thousands of keys an hour.
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule=_schedule(settings),
        beat_schedule_filename=str(settings.run_dir / "celerybeat-schedule"),
    )
    return app


def _schedule(settings: Settings) -> dict[str, Any]:
    """The periodic work. A run that waited a whole period in the queue (a busy or absent worker) has been
    overtaken by the next one, so it expires instead of piling up behind it."""
    every = {
        "reap-expired-sandboxes": (Task.REAP, settings.reap_interval_s),
        "reconcile-with-engines": (Task.RECONCILE, settings.reconcile_interval_s),
        "sample-resources": (Task.SAMPLE, settings.sample_interval_s),
        "expire-approvals": (Task.SWEEP_APPROVALS, settings.approval_sweep_s),
        "top-up-warm-pools": (Task.POOL_TOP_UP, max(settings.reap_interval_s, 15.0)),
    }
    return {
        name: {"task": task.value, "schedule": period, "options": {"expires": period}}
        for name, (task, period) in every.items()
    }


class CeleryTasks:
    """Sends tasks to this instance's worker by name; the Celery app is made on first use."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_celery(self.settings)
        return self._app

    def send(self, task: Task, args: Sequence[Any], *, delay_s: float = 0.0) -> str:
        """Queue a task (to run no sooner than `delay_s` from now); `RedisUnavailable` quickly when Redis is away
        (a request must not hang on it)."""
        retry = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
        countdown = delay_s or None
        try:
            return str(self.app.send_task(task.value, args=list(args), retry_policy=retry, countdown=countdown).id)
        except Exception as e:  # kombu raises OperationalError & co. when the broker is away
            raise RedisUnavailable(self.settings.redis_url, e) from e

    def state(self, task_id: str) -> dict[str, Any]:
        """Where a task with a kept result stands (image builds)."""
        result = AsyncResult(task_id, app=self.app)
        ready = result.ready()
        return {
            "id": task_id,
            "state": result.state,
            "result": result.result if ready and result.successful() else None,
            "error": str(result.result) if ready and not result.successful() else None,
        }
