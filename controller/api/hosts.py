"""Docker hosts: `local` always; admins add ssh:// engines that sandboxes can be placed on."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from controller.api.deps import Admin, FleetDep, SessionDep, Viewer
from controller.errors import Unavailable
from controller.models import NAME_PATTERN, Host

router = APIRouter(prefix="/api/v1/hosts", tags=["hosts"])


class HostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(max_length=255, description="ssh://user@host, tcp://host:2376 or unix:///path")


class HostPublic(BaseModel):
    name: str
    url: str
    reachable: bool
    error: str | None = None
    created_at: datetime | None = None


@router.get("", response_model=dict[str, list[HostPublic]])
def list_hosts(_: Viewer, fleet: FleetDep, session: SessionDep) -> dict[str, list[HostPublic]]:
    """Every engine with whether it answers now."""
    created = {h.name: h.created_at for h in session.exec(select(Host).order_by(col(Host.name)))}
    items = []
    for engine in fleet.hosts:
        try:
            engine.ping()
            items.append(
                HostPublic(name=engine.name, url=engine.url, reachable=True, created_at=created.get(engine.name))
            )
        except Unavailable as e:
            items.append(
                HostPublic(
                    name=engine.name,
                    url=engine.url,
                    reachable=False,
                    error=e.message,
                    created_at=created.get(engine.name),
                )
            )
    return {"items": items}


@router.post("", status_code=201, response_model=HostPublic)
def add_host(body: HostCreate, user: Admin, fleet: FleetDep) -> HostPublic:
    """Register an engine; it must answer now, so a typo is caught here rather than at the first create."""
    row = fleet.admin.add_host(actor=user.name, name=body.name, url=body.url)
    return HostPublic(name=row.name, url=row.url, reachable=True, created_at=row.created_at)
