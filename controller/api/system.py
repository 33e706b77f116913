"""Liveness and the health of what the controller depends on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from controller.api.deps import FleetDep, Viewer
from controller.errors import FleetgateError, Unavailable

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the API process answers. Needs no token."""
    return {"status": "ok"}


@router.get("/api/v1/status")
def status(_: Viewer, fleet: FleetDep) -> dict[str, Any]:
    """The controller's view of its dependencies: database, Redis, each Docker host, the workers."""
    checks: dict[str, Any] = {}
    try:
        with fleet.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:  # any driver error means the same thing to an operator: the DB is not usable
        checks["database"] = f"error: {e}"
    try:
        fleet.ping_redis()
        checks["redis"] = "ok"
    except Unavailable as e:
        checks["redis"] = f"error: {e.message}"
    hosts, isolation = {}, {}
    for engine in fleet.hosts:
        try:
            engine.ping()
            hosts[engine.name] = "ok"
            isolation[engine.name] = fleet.provisioner.isolation(engine, fleet.settings.default_image).describe()
        except Unavailable as e:
            hosts.setdefault(engine.name, f"error: {e.message}")
            isolation[engine.name] = f"error: {e.message}"
        except FleetgateError as e:  # no image to try gVisor with yet
            isolation[engine.name] = f"not decided yet: {e.message}"
    checks["docker"] = hosts
    checks["isolation"] = isolation
    checks["workers"] = fleet.worker_count()
    why_not = fleet.workspaces.unavailable()
    checks["workspace limits"] = (
        "ok (each workspace is a file system of its own size)"
        if why_not is None
        else (f"off: {why_not}; workspaces are not size-limited")
    )
    return {"instance": fleet.instance, "version": "0.1.0", "checks": checks}
