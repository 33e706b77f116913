"""Opening queue items and carrying decisions out of the database: wake the agent, pause/resume/stop, notify."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from controller.db import session_scope
from controller.errors import FleetgateError
from controller.events.store import record
from controller.models import Sandbox
from controller.oversight import audit
from controller.oversight.approvals import Decided
from controller.oversight.models import Approval, ApprovalKind
from controller.oversight.notify import announce
from controller.oversight.signals import publish_decided

if TYPE_CHECKING:
    from controller.fleet import Fleet
    from controller.oversight.gate import Subject

log = logging.getLogger(__name__)
NOTIFY_TASK = "fleetgate.notify.approval"
BROKER_TASK = "fleetgate.broker.run"


def open_item(
    session: Session,
    *,
    kind: ApprovalKind,
    sandbox: Sandbox | Subject,
    summary: str,
    actor: str,
    data: dict[str, Any] | None = None,
) -> Approval:
    """Put a checkpoint or an escalation in the queue (in the caller's write session); neither has a deadline."""
    item = Approval(kind=kind, sandbox_id=sandbox.id, summary=summary, data=data or {}, requester_id=sandbox.owner_id)
    session.add(item)
    session.flush()
    record(session, sandbox.id, "approval", approval_id=item.id, kind=kind.value, status="pending", summary=summary)
    audit.append(
        session,
        actor=actor,
        event=f"{kind.value}.opened",
        subject=f"approval:{item.id}",
        sandbox=sandbox.id,
        summary=summary,
        data=data or {},
    )
    announce(session, item.id or 0, "approval.requested")
    return item


def after_commit(fleet: Fleet, *, opened: list[int], pause: str | None = None) -> None:
    """Side effects of new queue items: notify subscribers, pause an escalated sandbox."""
    if pause is not None:
        _apply(fleet, [("pause", pause)])
    for approval_id in opened:
        _notify(fleet, approval_id, "approval.requested")


def after_decision(fleet: Fleet, decided: list[Decided]) -> None:
    """Side effects of settled items: wake the waiting agents, resume or stop sandboxes, notify subscribers."""
    settled = [d for d in decided if d.final]
    keys = [f"approval:{d.approval.id}" for d in settled]
    keys += [f"action:{d.approval.action_id}" for d in settled if d.approval.action_id is not None]
    publish_decided(fleet.redis, fleet.instance, keys)
    for d in settled:
        for action_id in d.brokered:
            queue_broker(fleet, action_id)
    _apply(fleet, [effect for d in settled for effect in d.effects])
    for d in settled:
        _notify(fleet, d.approval.id or 0, "approval.decided")


def queue_broker(fleet: Fleet, action_id: int) -> None:
    try:
        fleet.enqueue(BROKER_TASK, [action_id])
    except FleetgateError as e:
        log.warning("could not queue the broker of action %s (the sweep retries it): %s", action_id, e.message)


def _apply(fleet: Fleet, effects: list[tuple[str, str]]) -> None:
    for verb, sandbox_id in effects:
        try:
            with session_scope(fleet.engine) as session:
                if verb == "pause":
                    fleet.sandboxes.pause(session=session, sandbox_id=sandbox_id, reason="escalated")
                elif verb == "resume":
                    fleet.sandboxes.resume(session=session, sandbox_id=sandbox_id, reason="escalation resolved")
                elif verb == "stop":
                    fleet.sandboxes.stop(session=session, sandbox_id=sandbox_id)
        except FleetgateError as e:  # the decision stands; the sandbox may already be gone
            log.warning("could not %s sandbox %s after a decision: %s", verb, sandbox_id, e.message)


def _notify(fleet: Fleet, approval_id: int, event: str) -> None:
    try:
        fleet.enqueue(NOTIFY_TASK, [approval_id, event])
    except FleetgateError as e:  # webhooks are a convenience; the queue itself is in the database
        log.warning("could not queue %s notification for approval %s: %s", event, approval_id, e.message)
