"""The fleet policy layer (admins only may change it) and webhook subscriptions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from controller.api.deps import Admin, FleetDep, RowId, SessionDep, Viewer
from controller.flows.admin import WEBHOOK_EVENTS
from controller.oversight.models import FleetPolicy, Webhook

router = APIRouter(prefix="/api/v1", tags=["policy"])


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str | dict[str, Any] | None = Field(
        description="a preset name, a policy document, or its YAML/JSON text; null removes the fleet layer"
    )


@router.get("/policy")
def get_fleet_policy(_: Viewer, session: SessionDep) -> dict[str, Any]:
    row = session.get(FleetPolicy, 1)
    if row is None:
        return {"policy": None, "updated_by": None, "updated_at": None}
    return {"policy": row.source or row.document, "updated_by": row.updated_by, "updated_at": row.updated_at}


@router.put("/policy")
def put_fleet_policy(body: PolicyUpdate, user: Admin, fleet: FleetDep) -> dict[str, Any]:
    """Replace the fleet layer; it is validated first (a bad policy is a 422 naming the line)."""
    row = fleet.admin.set_fleet_policy(body.policy, actor=user.name)
    return {"policy": row.source or row.document, "updated_by": row.updated_by, "updated_at": row.updated_at}


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", max_length=500)
    events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))
    secret: str | None = Field(default=None, min_length=16, max_length=128)
    link_user: str | None = Field(
        default=None, max_length=63, description="put signed approve/deny links in the payload, deciding as this user"
    )


@router.get("/webhooks")
def list_webhooks(_: Admin, session: SessionDep) -> dict[str, Any]:
    rows = session.exec(select(Webhook).where(Webhook.active).order_by(col(Webhook.id)))
    return {"items": [w.model_dump(mode="json", exclude={"secret"}) for w in rows]}


@router.post("/webhooks", status_code=201)
def add_webhook(body: WebhookCreate, user: Admin, fleet: FleetDep) -> dict[str, Any]:
    """Subscribe a URL to queue events; payloads are signed with HMAC-SHA256 (the secret is shown once)."""
    hook = fleet.admin.add_webhook(
        actor=user.name, url=body.url, events=body.events, secret=body.secret, link_user=body.link_user
    )
    return hook.model_dump(mode="json")


@router.delete("/webhooks/{webhook_id}", status_code=204)
def remove_webhook(webhook_id: RowId, user: Admin, fleet: FleetDep) -> None:
    fleet.admin.remove_webhook(webhook_id, actor=user.name)
