"""Templates: named sandbox recipes (image, limits, env, command, policy) with an optional warm pool."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from sqlmodel import Session, col, func, select

from controller.api.deps import Admin, FleetDep, SessionDep, Viewer
from controller.errors import Conflict, TemplateNotFound
from controller.models import Sandbox, SandboxStatus, Template, TemplateCreate, TemplatePublic, TemplateUpdate
from controller.oversight import audit
from controller.oversight.policy_store import compile_policy
from controller.sandboxes.pool import REFILL_TASK, drain

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])


def _get(session: Session, name: str) -> Template:
    template = session.exec(select(Template).where(Template.name == name)).first()
    if template is None:
        raise TemplateNotFound(name)
    return template


def to_public(session: Session, template: Template) -> TemplatePublic:
    ready = session.exec(
        select(func.count())
        .select_from(Sandbox)
        .where(Sandbox.template_id == template.id, Sandbox.status == SandboxStatus.pooled)
    ).one()
    return TemplatePublic.model_validate(template, update={"pool_ready": ready})


@router.get("", response_model=dict[str, list[TemplatePublic]])
def list_templates(_: Viewer, session: SessionDep) -> dict[str, list[TemplatePublic]]:
    """Every template, with how many warm sandboxes are ready in its pool."""
    templates = session.exec(select(Template).order_by(col(Template.name)))
    return {"items": [to_public(session, t) for t in templates]}


@router.get("/{name}", response_model=TemplatePublic)
def get_template(name: str, _: Viewer, session: SessionDep) -> TemplatePublic:
    return to_public(session, _get(session, name))


@router.post("", status_code=201, response_model=TemplatePublic)
def create_template(body: TemplateCreate, user: Admin, fleet: FleetDep, session: SessionDep) -> TemplatePublic:
    """Add a template; its image must exist on its host, and its pool starts filling in the background."""
    if session.exec(select(Template).where(Template.name == body.name)).first() is not None:
        raise Conflict(f"a template named {body.name!r} exists already")
    session.commit()  # no transaction across the image check
    host = fleet.hosts.get(body.host)
    fleet.sandboxes.check_limits(host, cpus=body.cpus, memory_mb=body.memory_mb, ttl_s=body.ttl_s)
    fleet.sandboxes.require_image(host, body.image)
    if body.policy is not None:
        compile_policy(body.policy, source=f"template {body.name} policy")
    template = Template.model_validate(body)
    session.add(template)
    session.commit()
    audit.record_event(
        fleet.engine,
        actor=user.name,
        event="template.created",
        subject=f"template:{template.name}",
        template=body.model_dump(mode="json"),
    )
    if template.pool_size:
        fleet.enqueue(REFILL_TASK, [template.id])
    return to_public(session, template)


@router.patch("/{name}", response_model=TemplatePublic)
def update_template(
    name: str, body: TemplateUpdate, user: Admin, fleet: FleetDep, session: SessionDep
) -> TemplatePublic:
    """Change a template's pool size, image or TTL; the pool is refilled (or drained) to match."""
    template = _get(session, name)
    session.commit()  # no transaction across the image check
    changes = body.model_dump(exclude_unset=True)
    fleet.sandboxes.check_limits(fleet.hosts.get(template.host), cpus=None, memory_mb=None, ttl_s=changes.get("ttl_s"))
    if "image" in changes:
        fleet.sandboxes.require_image(fleet.hosts.get(template.host), changes["image"])
    if changes.get("policy") is not None:
        compile_policy(changes["policy"], source=f"template {name} policy")
    for key, value in changes.items():
        setattr(template, key, value)
    session.add(template)
    session.commit()
    audit.record_event(
        fleet.engine, actor=user.name, event="template.updated", subject=f"template:{name}", changes=changes
    )
    if "image" in changes:
        drain(fleet.sandboxes, session=session, template_id=template.id or 0)
    fleet.enqueue(REFILL_TASK, [template.id])
    return to_public(session, template)


@router.delete("/{name}", status_code=204)
def delete_template(name: str, user: Admin, fleet: FleetDep, session: SessionDep) -> None:
    """Delete a template and its warm pool; its running sandboxes keep running."""
    template = _get(session, name)
    drain(fleet.sandboxes, session=session, template_id=template.id or 0)
    session.execute(sa.update(Sandbox).where(col(Sandbox.template_id) == template.id).values(template_id=None))
    session.delete(template)
    session.commit()
    audit.record_event(fleet.engine, actor=user.name, event="template.deleted", subject=f"template:{name}")
