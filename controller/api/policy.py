"""The fleet policy layer (admins only may change it) and webhook subscriptions."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from controller.api.deps import Admin, RowId, SessionDep, Viewer, WriteSessionDep
from controller.errors import NotFound
from controller.oversight import audit
from controller.oversight.models import FleetPolicy, Webhook
from controller.oversight.policy_store import set_fleet_policy

router = APIRouter(prefix="/api/v1", tags=["policy"])
EVENTS = ["approval.requested", "approval.decided"]


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
def put_fleet_policy(body: PolicyUpdate, user: Admin, session: WriteSessionDep) -> dict[str, Any]:
    """Replace the fleet layer; it is validated first (a bad policy is a 422 naming the line)."""
    row = set_fleet_policy(session, value=body.policy, actor=user.name)
    session.commit()
    return {"policy": row.source or row.document, "updated_by": row.updated_by, "updated_at": row.updated_at}


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", max_length=500)
    events: list[str] = Field(default_factory=lambda: list(EVENTS))
    secret: str | None = Field(default=None, min_length=16, max_length=128)
    link_user: str | None = Field(
        default=None, max_length=63, description="put signed approve/deny links in the payload, deciding as this user"
    )


@router.get("/webhooks")
def list_webhooks(_: Admin, session: SessionDep) -> dict[str, Any]:
    rows = session.exec(select(Webhook).where(Webhook.active).order_by(col(Webhook.id)))
    return {"items": [w.model_dump(mode="json", exclude={"secret"}) for w in rows]}


@router.post("/webhooks", status_code=201)
def add_webhook(body: WebhookCreate, user: Admin, session: WriteSessionDep) -> dict[str, Any]:
    """Subscribe a URL to queue events; payloads are signed with HMAC-SHA256 (the secret is shown once)."""
    unknown = sorted(set(body.events) - set(EVENTS))
    if unknown:
        from controller.errors import Invalid

        raise Invalid(f"unknown events {unknown}; known: {EVENTS}")
    hook = Webhook(
        url=body.url, secret=body.secret or secrets.token_urlsafe(32), events=body.events, link_user=body.link_user
    )
    session.add(hook)
    session.flush()
    audit.append(session, actor=user.name, event="webhook.added", subject=f"webhook:{hook.id}", url=body.url)
    session.commit()
    return hook.model_dump(mode="json")


@router.delete("/webhooks/{webhook_id}", status_code=204)
def remove_webhook(webhook_id: RowId, user: Admin, session: WriteSessionDep) -> None:
    hook = session.get(Webhook, webhook_id)
    if hook is None or not hook.active:
        raise NotFound(f"no webhook {webhook_id}")
    hook.active = False
    session.add(hook)
    audit.append(session, actor=user.name, event="webhook.removed", subject=f"webhook:{webhook_id}")
    session.commit()
