"""Grants: remembered approvals, listed and revocable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from controller.api.deps import Approver, FleetDep, RowId, SessionDep, Viewer
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
def revoke_grant(grant_id: RowId, user: Approver, fleet: FleetDep) -> dict[str, Any]:
    """Revoke a grant: matching actions ask again. Needs the role that may create a grant of that scope."""
    return fleet.decisions.revoke_grant(grant_id, user=user).model_dump(mode="json")
