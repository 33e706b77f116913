"""Runtime routes of the oversight model: propose an action, wait for its decision, checkpoint, escalate.

Waiting is a long-poll that holds no thread: the handler awaits a wake-up from the decision channel, then
reads the database. The runtime simply asks again after a timeout or a controller restart, so the wait is
as durable as the database row it reads.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from controller.auth import bearer
from controller.db import write_session
from controller.errors import NotFound
from controller.fleet import Fleet
from controller.gateway.auth import CurrentSandbox, subject_for_token
from controller.models import ROW_ID_MAX, SANDBOX_ID_PATTERN, Sandbox, utcnow
from controller.oversight import audit
from controller.oversight.approvals import get_approval
from controller.oversight.brokers import broker_for
from controller.oversight.gate import GateOutcome, action_reply, gate
from controller.oversight.models import Action, ActionStatus, Approval, ApprovalKind, ApprovalStatus
from controller.oversight.policy import Risk
from controller.oversight.queue import after_commit, open_item, queue_broker

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


@router.post("/actions")
async def propose(
    sandbox_id: Annotated[str, Path(pattern=SANDBOX_ID_PATTERN)], body: Proposal, request: Request
) -> dict[str, Any]:
    """Evaluate a proposed action; allowed and denied answer at once, `pending` means wait on the action.

    The hot path of every agent: the token is checked inside the one write transaction that decides and records.
    """
    fleet = fleet_of(request)
    if body.brokered:
        broker_for(body.tool)
    return await run_in_threadpool(_propose, fleet, sandbox_id, body, bearer(request))


def _propose(fleet: Fleet, sandbox_id: str, body: Proposal, secret: str) -> dict[str, Any]:
    escalation: Approval | None = None
    with write_session(fleet.engine) as session:
        sandbox = subject_for_token(session=session, secret=secret, sandbox_id=sandbox_id)
        outcome: GateOutcome = gate(
            session,
            sandbox=sandbox,
            tool=body.tool,
            args=body.args,
            risk=body.risk,
            escalate_after=fleet.settings.escalate_after_denials,
            brokered=body.brokered,
        )
        if outcome.escalate:
            escalation = open_item(
                session, kind=ApprovalKind.escalation, sandbox=sandbox, summary=outcome.escalate, actor="controller"
            )
        reply = outcome.reply()
        opened = [a.id for a in (outcome.approval, escalation) if a is not None and a.id is not None]
        run_broker = outcome.action["broker_status"] == "queued"
    if run_broker:
        queue_broker(fleet, reply["action_id"])
    after_commit(fleet, opened=opened, pause=sandbox_id if escalation else None)
    return reply


@router.get("/actions/{action_id}", response_model=None)
async def action_state(
    sandbox: CurrentSandbox, action_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)], request: Request, wait_s: WaitS = 0
) -> dict[str, Any] | JSONResponse:
    """The action's decision; with `wait_s`, wait up to that long for a pending one to be decided."""
    fleet = fleet_of(request)
    deadline = time.monotonic() + wait_s
    while True:
        action = await run_in_threadpool(_read_action, fleet, sandbox.id, action_id)
        remaining = deadline - time.monotonic()
        if not _unsettled(action) or remaining <= 0:
            break
        await request.app.state.waiter.wait(f"action:{action_id}", remaining)
    reply = action_reply(action.model_dump())
    if not _unsettled(action) and action.delivered_at is None:
        # Recorded after the agent has its answer: the mark is for the audit, not on the agent's path.
        return JSONResponse(reply, background=BackgroundTask(_mark_delivered, fleet, action_id))
    return reply


def _unsettled(action: Action) -> bool:
    """Still pending, or allowed with its broker yet to run."""
    return action.status == ActionStatus.pending or action.broker_status in ("queued", "running")


def _read_action(fleet: Fleet, sandbox_id: str, action_id: int) -> Action:
    from sqlmodel import Session

    with Session(fleet.engine) as session:
        action = session.get(Action, action_id)
        if action is None or action.sandbox_id != sandbox_id:
            raise NotFound(f"no action {action_id} in this sandbox")
        return action


def _mark_delivered(fleet: Fleet, action_id: int) -> None:
    with write_session(fleet.engine) as session:
        action = session.get(Action, action_id)
        if action is not None and action.delivered_at is None:
            action.delivered_at = utcnow()
            session.add(action)
            audit.append(
                session,
                actor=f"sandbox:{action.sandbox_id}",
                event="action.delivered",
                subject=f"action:{action_id}",
                status=action.status.value,
            )


@router.post("/checkpoints")
async def checkpoint(sandbox: CurrentSandbox, body: CheckpointRequest, request: Request) -> dict[str, Any]:
    """Pause the agent's work for review; wait on the returned approval for the reviewer's feedback."""
    fleet = fleet_of(request)
    return await run_in_threadpool(_open, fleet, sandbox.id, ApprovalKind.checkpoint, body.summary, body.data)


@router.post("/escalations")
async def escalate(sandbox: CurrentSandbox, body: EscalationRequest, request: Request) -> dict[str, Any]:
    """Hand the sandbox to a person: it is paused until someone resumes or stops it."""
    return await run_in_threadpool(_open, fleet_of(request), sandbox.id, ApprovalKind.escalation, body.reason, {})


def _open(fleet: Fleet, sandbox_id: str, kind: ApprovalKind, summary: str, data: dict[str, Any]) -> dict[str, Any]:
    with write_session(fleet.engine) as session:
        sandbox = session.get(Sandbox, sandbox_id)
        assert sandbox is not None
        item = open_item(session, kind=kind, sandbox=sandbox, summary=summary, data=data, actor=f"sandbox:{sandbox_id}")
        reply = {"approval_id": item.id, "status": item.status.value}
    after_commit(fleet, opened=[item.id or 0], pause=sandbox_id if kind == ApprovalKind.escalation else None)
    return reply


@router.get("/approvals/{approval_id}")
async def approval_state(
    sandbox: CurrentSandbox, approval_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)], request: Request, wait_s: WaitS = 0
) -> dict[str, Any]:
    """A checkpoint's or escalation's outcome: status, and the reviewer's message."""
    fleet = fleet_of(request)
    deadline = time.monotonic() + wait_s
    while True:
        approval = await run_in_threadpool(_read_approval, fleet, sandbox.id, approval_id)
        remaining = deadline - time.monotonic()
        if approval.status != ApprovalStatus.pending or remaining <= 0:
            break
        await request.app.state.waiter.wait(f"approval:{approval_id}", remaining)
    return {"approval_id": approval.id, "status": approval.status.value, "message": approval.message}


def _read_approval(fleet: Fleet, sandbox_id: str, approval_id: int) -> Approval:
    from sqlmodel import Session

    with Session(fleet.engine) as session:
        approval = get_approval(session, approval_id)
        if approval.sandbox_id != sandbox_id:
            raise NotFound(f"no approval {approval_id} in this sandbox")
        return approval
