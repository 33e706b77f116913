"""Services: upstreams sandboxes reach through the controller (model APIs, HTTP APIs) and git remotes for the
broker. Admins add and remove them; anyone may list them, never with the secret."""

from __future__ import annotations

from fastapi import APIRouter

from controller.api.deps import Admin, FleetDep, Viewer
from controller.models import ServiceCreate, ServicePublic

router = APIRouter(prefix="/api/v1", tags=["services"])


@router.post("/services", status_code=201, response_model=ServicePublic)
def add_service(body: ServiceCreate, user: Admin, fleet: FleetDep) -> ServicePublic:
    """Add a service; `secret` is sealed at rest and added by the controller on the way out, never shown again."""
    return fleet.admin.add_service(body, actor=user.name)


@router.get("/services", response_model=dict[str, list[ServicePublic]])
def list_services(_: Viewer, fleet: FleetDep) -> dict[str, list[ServicePublic]]:
    return {"items": fleet.admin.list_services()}


@router.delete("/services/{name}", status_code=204)
def remove_service(name: str, user: Admin, fleet: FleetDep) -> None:
    fleet.admin.remove_service(name, actor=user.name)
