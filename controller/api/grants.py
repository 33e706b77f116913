"""Grants: remembered approvals, listed and revocable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from controller.api.deps import Approver, RowId, SessionDep, Viewer, WriteSessionDep
from controller.errors import Forbidden, NotFound
from controller.models import Role, utcnow
from controller.oversight import audit
from controller.oversight.approvals import SCOPE_ROLE
from controller.oversight.models import Grant

router = APIRouter(prefix="/api/v1/grants", tags=["grants"])


@router.get("")
def list_grants(_: Viewer, session: SessionDep, all: bool = False) -> dict[str, Any]:
    """Active grants (every grant with `all=true`), newest first."""
    query = select(Grant)
    if not all:
        query = query.where(col(Grant.revoked_at).is_(None))
    return {"items": [g.model_dump(mode="json") for g in session.exec(query.order_by(col(Grant.id).desc()))]}


@router.delete("/{grant_id}")
def revoke_grant(grant_id: RowId, user: Approver, session: WriteSessionDep) -> dict[str, Any]:
    """Revoke a grant: matching actions ask again. Needs the role that may create a grant of that scope."""
    grant = session.get(Grant, grant_id)
    if grant is None or grant.revoked_at is not None:
        raise NotFound(f"no active grant {grant_id}")
    needed = SCOPE_ROLE[grant.scope]
    if not Role(user.role).includes(needed):
        raise Forbidden(f"revoking a {grant.scope.value}-wide grant needs the {needed.value} role")
    grant.revoked_at, grant.revoked_by = utcnow(), user.name
    session.add(grant)
    audit.append(session, actor=user.name, event="grant.revoked", subject=f"grant:{grant_id}")
    session.commit()
    return grant.model_dump(mode="json")
