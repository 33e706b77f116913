"""The worker's Celery app: `celery -A controller.worker.celery_app worker -B` (what `fleetgate up` starts).

Tasks run the slow work only (pool refill, image builds, reaping, reconciling, deliveries, brokered actions);
none ever waits for a person. The app's configuration is shared with the senders (`controller.taskqueue`).
"""

from __future__ import annotations

from controller.config import get_settings
from controller.taskqueue import make_celery

app = make_celery(get_settings())
