"""Images: what sandbox images the local engine has, and building them in the background."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from controller.api.deps import Admin, FleetDep, Viewer
from controller.names import Task

router = APIRouter(prefix="/api/v1/images", tags=["images"])


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str | None = Field(default=None, max_length=255, description="build on this image instead of debootstrap")
    force: bool = False


@router.get("")
def list_images(_: Viewer, fleet: FleetDep) -> dict[str, list[dict[str, Any]]]:
    """fleetgate's images on the local engine."""
    images = fleet.hosts.local.images("fleetgate.image")
    return {"items": [{"id": i.id, "tags": list(i.tags), "size": i.size, "created": i.created} for i in images]}


@router.post("/build", status_code=202)
def build(body: BuildRequest, _: Admin, fleet: FleetDep) -> dict[str, str]:
    """Build the sandbox images on a Celery worker; poll GET /api/v1/images/builds/{id}."""
    return {"id": fleet.tasks.send(Task.BUILD_IMAGES, [body.base, body.force])}


@router.get("/builds/{task_id}")
def build_state(task_id: str, _: Viewer, fleet: FleetDep) -> dict[str, Any]:
    return fleet.tasks.state(task_id)
