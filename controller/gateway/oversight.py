"""Runtime routes of the oversight model: propose an action, wait for its decision, checkpoint, escalate.

Waiting is a long-poll that holds no thread: the handler awaits a wake-up from the decision channel
(`events.wakeups`), then reads the database. The runtime simply asks again after a timeout or a controller
restart, so the wait is as durable as the database row it reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from controller.auth import bearer
from controller.errors import NotFound
from controller.events.wakeups import Waiter
from controller.fleet import Fleet
from controller.gateway.auth import CurrentSandbox
from controller.models import ROW_ID_MAX, SANDBOX_ID_PATTERN
from controller.oversight.approvals import get_approval
from controller.oversight.brokers import broker_for
from controller.oversight.gate import action_reply
from controller.oversight.models import Action, ActionStatus, Approval, ApprovalKind, ApprovalStatus
from controller.oversight.policy import Risk

router = APIRouter(prefix="/runtime/v1/sandboxes/{sandbox_id}")
MAX_WAIT_S = 30.0
WaitS = Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="long-poll up to this many seconds")]


class Proposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")
    args: dict[str, Any] = Field(default_factory=dict)
    risk: Risk = Risk.low
    brokered: bool = Field(default=False, description="run it on the controller side once allowed (sdk.act)")


class CheckpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict)


class EscalationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


def fleet_of(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


def waiter_of(request: Request) -> Waiter:
    waiter: Waiter = request.app.state.waiter
    return waiter


@router.post("/actions")
async def propose(
    sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)], body: Proposal, request: Request
) -> dict[str, Any]:
    """Evaluate a proposed action; allowed and denied answer at once, `pending` means wait on the action."""
    if body.brokered:
        broker_for(body.tool)
    reply: dict[str, Any] = await run_in_threadpool(
        fleet_of(request).runtime.propose,
        secret=bearer(request),
        sandbox_id=sandbox_id,
        tool=body.tool,
        args=body.args,
        risk=body.risk,
        brokered=body.brokered,
    )
    return reply


@router.get("/actions/{action_id}", response_model=None)
async def action_state(
    sandbox: CurrentSandbox, action_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)], request: Request, wait_s: WaitS = 0
) -> dict[str, Any] | JSONResponse:
    """The action's decision; with `wait_s`, wait up to that long for a pending one to be decided."""
    fleet = fleet_of(request)

    async def read() -> Action:
        return await run_in_threadpool(_read_action, fleet, sandbox.id, action_id)

    action = await waiter_of(request).until(f"action:{action_id}", wait_s, read, lambda a: not _unsettled(a))
    reply = action_reply(action.model_dump())
    if not _unsettled(action) and action.delivered_at is None:
        # Recorded after the agent has its answer: the mark is for the audit, not on the agent's path.
        return JSONResponse(reply, background=BackgroundTask(fleet.runtime.delivered, action_id))
    return reply


def _unsettled(action: Action) -> bool:
    """Still pending, or allowed with its broker yet to run."""
    return action.status == ActionStatus.pending or action.broker_status in ("queued", "running")


def _read_action(fleet: Fleet, sandbox_id: str, action_id: int) -> Action:
    with Session(fleet.db) as session:
        action = session.get(Action, action_id)
        if action is None or action.sandbox_id != sandbox_id:
            raise NotFound(f"no action {action_id} in this sandbox")
        return action


@router.post("/checkpoints")
async def checkpoint(sandbox: CurrentSandbox, body: CheckpointRequest, request: Request) -> dict[str, Any]:
    """Pause the agent's work for review; wait on the returned approval for the reviewer's feedback."""
    runtime = fleet_of(request).runtime
    reply: dict[str, Any] = await run_in_threadpool(
        runtime.open, sandbox.id, kind=ApprovalKind.checkpoint, summary=body.summary, data=body.data
    )
    return reply


@router.post("/escalations")
async def escalate(sandbox: CurrentSandbox, body: EscalationRequest, request: Request) -> dict[str, Any]:
    """Hand the sandbox to a person: it is paused until someone resumes or stops it."""
    runtime = fleet_of(request).runtime
    reply: dict[str, Any] = await run_in_threadpool(
        runtime.open, sandbox.id, kind=ApprovalKind.escalation, summary=body.reason, data={}
    )
    return reply


@router.get("/approvals/{approval_id}")
async def approval_state(
    sandbox: CurrentSandbox, approval_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)], request: Request, wait_s: WaitS = 0
) -> dict[str, Any]:
    """A checkpoint's or escalation's outcome: status, and the reviewer's message."""
    fleet = fleet_of(request)

    async def read() -> Approval:
        return await run_in_threadpool(_read_approval, fleet, sandbox.id, approval_id)

    approval = await waiter_of(request).until(
        f"approval:{approval_id}", wait_s, read, lambda a: a.status != ApprovalStatus.pending
    )
    return {"approval_id": approval.id, "status": approval.status.value, "message": approval.message}


def _read_approval(fleet: Fleet, sandbox_id: str, approval_id: int) -> Approval:
    with Session(fleet.db) as session:
        approval = get_approval(session, approval_id)
        if approval.sandbox_id != sandbox_id:
            raise NotFound(f"no approval {approval_id} in this sandbox")
        return approval
