"""The Celery app: Redis as broker and result store, one queue per controller instance, beat for the clocks.

Run a worker with `celery -A controller.worker.celery_app worker -B` (what `fleetgate up` does). Tasks run the slow
work only (pool refill, image builds, reaping, reconciling); none ever waits for a person.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from controller.config import Settings, get_settings, task_queue


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "fleetgate",
        broker=settings.redis_url,
        backend=settings.redis_url,
        include=["controller.worker.tasks"],
    )
    app.conf.update(
        task_default_queue=task_queue(settings),
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
        "reap-expired-sandboxes": ("fleetgate.sandboxes.reap", settings.reap_interval_s),
        "reconcile-with-engines": ("fleetgate.sandboxes.reconcile", settings.reconcile_interval_s),
        "sample-resources": ("fleetgate.sandboxes.sample", settings.sample_interval_s),
        "expire-approvals": ("fleetgate.approvals.sweep", settings.approval_sweep_s),
        "top-up-warm-pools": ("fleetgate.pool.top_up", max(settings.reap_interval_s, 15.0)),
    }
    return {
        name: {"task": task, "schedule": period, "options": {"expires": period}}
        for name, (task, period) in every.items()
    }


app = make_celery(get_settings())
