"""Prometheus metrics at /metrics, computed at scrape time from the database and Redis (any process may have
made the change, so nothing is counted in this process's memory). Scrape with a viewer token:
`authorization: {credentials: fg_...}` in the Prometheus job."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from controller.api.deps import FleetDep, Viewer
from controller.fleet import Fleet
from controller.models import Sandbox, SandboxStatus
from controller.oversight.models import Action, Approval, ApprovalKind, ApprovalStatus

router = APIRouter(tags=["system"])
BUCKETS = (0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        with Session(self.fleet.db) as session:
            yield self._sandboxes(session)
            yield self._pending(session)
            yield self._latency(session)
            yield self._actions(session)
        yield self._events()
        workers = GaugeMetricFamily("fleetgate_workers", "Celery workers seen alive in the last 30 s")
        workers.add_metric([], self.fleet.worker_count())
        yield workers

    def _sandboxes(self, session: Session) -> Metric:
        family = GaugeMetricFamily("fleetgate_sandboxes", "Sandboxes by status", labels=["status"])
        counts = dict(session.exec(select(Sandbox.status, func.count()).group_by(Sandbox.status)).all())
        for status in SandboxStatus:
            if status not in (SandboxStatus.removed,):
                family.add_metric([status.value], counts.get(status, 0))
        return family

    def _pending(self, session: Session) -> Metric:
        family = GaugeMetricFamily("fleetgate_approvals_pending", "Items waiting in the queue", labels=["kind"])
        query = select(Approval.kind, func.count()).where(Approval.status == ApprovalStatus.pending)
        counts = dict(session.exec(query.group_by(Approval.kind)).all())
        for kind in ApprovalKind:
            family.add_metric([kind.value], counts.get(kind, 0))
        return family

    def _latency(self, session: Session) -> Metric:
        family = HistogramMetricFamily(
            "fleetgate_decision_latency_seconds", "From an item entering the queue to its decision", labels=["kind"]
        )
        rows = session.exec(
            select(Approval.kind, Approval.created_at, Approval.decided_at).where(col(Approval.decided_at).is_not(None))
        ).all()
        for kind in ApprovalKind:
            waits = [(d - c).total_seconds() for k, c, d in rows if k == kind and d is not None]
            buckets = [(str(b), sum(w <= b for w in waits)) for b in BUCKETS] + [("+Inf", len(waits))]
            family.add_metric([kind.value], buckets, sum_value=sum(waits))
        return family

    def _actions(self, session: Session) -> Metric:
        family = CounterMetricFamily(
            "fleetgate_actions", "Gated actions by outcome and what decided them", labels=["status", "decided_by"]
        )
        query = select(Action.status, Action.decided_by, func.count()).group_by(
            col(Action.status), col(Action.decided_by)
        )
        for status, decided_by, count in session.exec(query).all():
            family.add_metric([str(status), decided_by or "none"], count)
        return family

    def _events(self) -> Metric:
        family = CounterMetricFamily("fleetgate_events", "Events published to the live streams (rate() = events/s)")
        try:
            total = int(self.fleet.redis.get(self.fleet.keys.events_total) or 0)
        except redis.RedisError:
            total = 0
        family.add_metric([], total)
        return family


@router.get("/metrics")
def metrics(_: Viewer, fleet: FleetDep) -> Response:
    registry = CollectorRegistry()
    registry.register(FleetCollector(fleet))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
