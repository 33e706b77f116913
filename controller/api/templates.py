"""Templates: named sandbox recipes (image, limits, env, command, policy) with an optional warm pool."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session, col, select

from controller.api.deps import Admin, FleetDep, SessionDep, Viewer
from controller.models import Template, TemplateCreate, TemplatePublic, TemplateUpdate
from controller.sandboxes import lifecycle, pool

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])


def to_public(session: Session, template: Template) -> TemplatePublic:
    ready = pool.ready(session, template.id or 0)
    return TemplatePublic.model_validate(template, update={"pool_ready": ready})


@router.get("", response_model=dict[str, list[TemplatePublic]])
def list_templates(_: Viewer, session: SessionDep) -> dict[str, list[TemplatePublic]]:
    """Every template, with how many warm sandboxes are ready in its pool."""
    templates = session.exec(select(Template).order_by(col(Template.name)))
    return {"items": [to_public(session, t) for t in templates]}


@router.get("/{name}", response_model=TemplatePublic)
def get_template(name: str, _: Viewer, session: SessionDep) -> TemplatePublic:
    return to_public(session, lifecycle.find_template(session, name))


@router.post("", status_code=201, response_model=TemplatePublic)
def create_template(body: TemplateCreate, user: Admin, fleet: FleetDep, session: SessionDep) -> TemplatePublic:
    """Add a template; its image must exist on its host, and its pool starts filling in the background."""
    return to_public(session, fleet.admin.create_template(body, actor=user.name))


@router.patch("/{name}", response_model=TemplatePublic)
def update_template(
    name: str, body: TemplateUpdate, user: Admin, fleet: FleetDep, session: SessionDep
) -> TemplatePublic:
    """Change a template's pool size, image or TTL; the pool is refilled (or drained) to match."""
    return to_public(session, fleet.admin.update_template(name, body, actor=user.name))


@router.delete("/{name}", status_code=204)
def delete_template(name: str, user: Admin, fleet: FleetDep) -> None:
    """Delete a template and its warm pool; its running sandboxes keep running."""
    fleet.admin.delete_template(name, actor=user.name)
