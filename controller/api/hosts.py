"""Docker hosts: `local` always; admins add ssh:// engines that sandboxes can be placed on."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from controller.api.deps import Admin, FleetDep, SessionDep, Viewer
from controller.errors import Conflict, Invalid, Unavailable
from controller.models import NAME_PATTERN, Host
from controller.oversight import audit
from controller.sandboxes.hosts import LOCAL, validate_host_url

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
    for host in fleet.hosts:
        try:
            host.ping()
            items.append(HostPublic(name=host.name, url=host.url, reachable=True, created_at=created.get(host.name)))
        except Unavailable as e:
            items.append(
                HostPublic(
                    name=host.name,
                    url=host.url,
                    reachable=False,
                    error=e.message,
                    created_at=created.get(host.name),
                )
            )
    return {"items": items}


@router.post("", status_code=201, response_model=HostPublic)
def add_host(body: HostCreate, user: Admin, fleet: FleetDep, session: SessionDep) -> HostPublic:
    """Register an engine; it must answer now, so a typo is caught here rather than at the first create."""
    if body.name == LOCAL or session.exec(select(Host).where(Host.name == body.name)).first():
        raise Conflict(f"a host named {body.name!r} exists already")
    validate_host_url(body.url)
    session.commit()  # no transaction across the engine ping
    host = fleet.hosts.add(body.name, body.url)
    try:
        host.ping()
    except Unavailable as e:
        fleet.hosts.remove(body.name)
        raise Invalid(e.message) from e
    row = Host(name=body.name, url=body.url)
    session.add(row)
    session.commit()
    audit.record_event(fleet.engine, actor=user.name, event="host.added", subject=f"host:{body.name}", url=body.url)
    return HostPublic(name=row.name, url=row.url, reachable=True, created_at=row.created_at)
