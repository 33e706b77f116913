"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from controller.auth import require
from controller.db import SessionDep
from controller.fleet import Fleet
from controller.models import ROW_ID_MAX, SANDBOX_ID_PATTERN, Role, User


def get_fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


FleetDep = Annotated[Fleet, Depends(get_fleet)]
Viewer = Annotated[User, Depends(require(Role.viewer))]
Approver = Annotated[User, Depends(require(Role.approver))]
Operator = Annotated[User, Depends(require(Role.operator))]
Admin = Annotated[User, Depends(require(Role.admin))]
SandboxId = Annotated[
    str,
    Path(pattern=SANDBOX_ID_PATTERN, description="a sandbox id, like sb_0123456789ab"),
]
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description="a row id")]
Before = Annotated[int | None, Query(ge=1, le=ROW_ID_MAX, description="only items older than this id (paging)")]

__all__ = [
    "ROW_ID_MAX",
    "Admin",
    "Approver",
    "Before",
    "FleetDep",
    "Operator",
    "RowId",
    "SandboxId",
    "SessionDep",
    "Viewer",
]
