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
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule=_schedule(settings),
        beat_schedule_filename=str(settings.run_dir / "celerybeat-schedule"),
    )
    return app


def _schedule(settings: Settings) -> dict[str, Any]:
    return {
        "reap-expired-sandboxes": {"task": "fleetgate.sandboxes.reap", "schedule": settings.reap_interval_s},
        "reconcile-with-engines": {
            "task": "fleetgate.sandboxes.reconcile",
            "schedule": settings.reconcile_interval_s,
        },
        "sample-resources": {"task": "fleetgate.sandboxes.sample", "schedule": settings.sample_interval_s},
        "expire-approvals": {"task": "fleetgate.approvals.sweep", "schedule": settings.approval_sweep_s},
        "top-up-warm-pools": {
            "task": "fleetgate.pool.top_up",
            "schedule": max(settings.reap_interval_s, 15.0),
        },
    }


app = make_celery(get_settings())
