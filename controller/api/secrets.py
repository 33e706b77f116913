"""Named secrets for the brokers: admins set, list (names and times only) and remove them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from controller.api.deps import Admin, FleetDep
from controller.models import SecretPublic, SecretSet

router = APIRouter(prefix="/api/v1", tags=["secrets"])


@router.put("/secrets/{name}", response_model=SecretPublic)
def set_secret(name: str, body: SecretSet, user: Admin, fleet: FleetDep, response: Response) -> SecretPublic:
    """Store or replace a secret (201 when new); the value is sealed at rest and never answered."""
    public, created = fleet.admin.set_secret(name, body.value, actor=user.name)
    response.status_code = 201 if created else 200
    return public


@router.get("/secrets", response_model=dict[str, list[SecretPublic]])
def list_secrets(_: Admin, fleet: FleetDep) -> dict[str, list[SecretPublic]]:
    return {"items": fleet.admin.list_secrets()}


@router.delete("/secrets/{name}", status_code=204)
def remove_secret(name: str, user: Admin, fleet: FleetDep) -> None:
    fleet.admin.remove_secret(name, actor=user.name)
