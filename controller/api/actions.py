"""Gated actions: every call an agent made through the gate, its decision and what decided it; post-hoc review."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from sqlmodel import col, select

from controller.api.deps import Before, FleetDep, RowId, SessionDep, Viewer
from controller.errors import NotFound
from controller.oversight.models import Action, ActionStatus, ReviewRequest

router = APIRouter(prefix="/api/v1/actions", tags=["actions"])


def public(action: Action) -> dict[str, Any]:
    return action.model_dump(mode="json")


def tool_is(spec: str) -> sa.ColumnElement[bool] | None:
    """The tools a `tool` filter names: `a,b` is either tool, `net.*` any tool that starts with `net.`."""
    tool = col(Action.tool)
    names = [name for name in (part.strip() for part in spec.split(",")) if name]
    matches = [tool.startswith(name[:-1], autoescape=True) if name.endswith("*") else tool == name for name in names]
    return sa.or_(*matches) if matches else None


@router.get("")
def list_actions(
    _: Viewer,
    session: SessionDep,
    sandbox: str | None = None,
    status: ActionStatus | None = None,
    tool: Annotated[
        str | None, Query(max_length=1000, description="a tool, several (`a,b`) or a prefix (`net.*`)")
    ] = None,
    review: Annotated[str | None, Query(pattern="^(reviewed|flagged|none)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Before = None,
) -> dict[str, Any]:
    """Actions newest first, filtered by sandbox, status, tool or review mark."""
    query = select(Action)
    if sandbox:
        query = query.where(Action.sandbox_id == sandbox)
    if status is not None:
        query = query.where(Action.status == status)
    if tool and (tools := tool_is(tool)) is not None:
        query = query.where(tools)
    if review == "none":
        query = query.where(col(Action.review).is_(None))
    elif review:
        query = query.where(Action.review == review)
    if before is not None:
        query = query.where(col(Action.id) < before)
    rows = list(session.exec(query.order_by(col(Action.id).desc()).limit(limit + 1)))
    return {"items": [public(a) for a in rows[:limit]], "next": str(rows[limit - 1].id) if len(rows) > limit else None}


@router.get("/{action_id}")
def get_action(action_id: RowId, _: Viewer, session: SessionDep) -> dict[str, Any]:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    return public(action)


@router.post("/{action_id}/review")
def review_action(action_id: RowId, body: ReviewRequest, user: Viewer, fleet: FleetDep) -> dict[str, Any]:
    """Mark an action reviewed or flagged after the fact (auditors and everyone above)."""
    return public(fleet.decisions.review(action_id, user=user, request=body))
