"""Webhooks on queue events: a payload a Slack incoming webhook can show as is, signed with HMAC-SHA256.

Headers: `X-Fleetgate-Event`, `X-Fleetgate-Delivery`, `X-Fleetgate-Timestamp` and
`X-Fleetgate-Signature: sha256=<hex HMAC of "<timestamp>.<body>">` (the timestamp in the MAC stops replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import Session, col, select

from controller.effects import Enqueue, notify
from controller.models import utcnow
from controller.oversight.links import link_key, sign
from controller.oversight.models import Approval, Delivery, Notification, Webhook

BACKOFF_S = (1, 2, 4, 8, 16, 32)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(approval: Approval, event: str, *, links: dict[str, str] | None) -> dict[str, Any]:
    verb = "needs a decision" if event == "approval.requested" else f"was {approval.status.value}"
    text = f"fleetgate: {approval.kind.value} {approval.id} in {approval.sandbox_id} {verb}: {approval.summary[:300]}"
    if links:
        text += f"\nApprove: {links['approve']}\nDeny: {links['deny']}"
    return {
        "text": text,
        "event": event,
        "approval": json.loads(approval.model_dump_json(exclude={"requester_id"})),
        "links": links,
    }


def announce(session: Session, approval_id: int, event: str) -> Enqueue:
    """Keep an approval event for the webhooks in the caller's transaction: it is sent if, and only if, the
    event itself is committed, whether or not Redis is there to queue the work right then (the sweep finds it).
    Returns the effect that queues its planning at once."""
    session.add(Notification(approval_id=approval_id, event=event))
    return notify(approval_id, event)


def claim(session: Session, approval_id: int, event: str) -> bool:
    """Take the event's notification for planning, in the planning transaction: it leaves the outbox, so a second
    run of the same task gets False, and the outbox does not grow with the approvals."""
    taken = session.execute(
        sa.delete(Notification).where(col(Notification.approval_id) == approval_id, col(Notification.event) == event)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def stranded(
    session: Session, *, notes_after: timedelta, sends_after: timedelta, limit: int = 200
) -> tuple[list[tuple[int, str]], list[int]]:
    """Work whose task never reached the worker: notifications not planned, and deliveries never tried, oldest
    first and at most `limit` of each, so a backlog behind a busy worker is not queued again in full every sweep."""
    now = utcnow()
    notes = session.exec(
        select(Notification.approval_id, Notification.event)
        .where(col(Notification.created_at) < now - notes_after)
        .order_by(col(Notification.id))
        .limit(limit)
    ).all()
    sends = session.exec(
        select(Delivery.id)
        .where(Delivery.status == "pending", Delivery.attempts == 0, col(Delivery.created_at) < now - sends_after)
        .order_by(col(Delivery.id))
        .limit(limit)
    ).all()
    return [(a, e) for a, e in notes], [d for d in sends if d is not None]


def plan_deliveries(session: Session, *, approval_id: int, event: str, base_url: str, home: Any) -> list[Delivery]:
    """One delivery row per active webhook subscribed to the event (the caller commits and sends them)."""
    approval = session.get(Approval, approval_id)
    if approval is None:
        return []
    deliveries = []
    for hook in session.exec(select(Webhook).where(Webhook.active)):
        if event not in hook.events:
            continue
        links = None
        if hook.link_user and event == "approval.requested":
            key = link_key(home)
            links = {
                d: f"{base_url}/l/{sign(key, approval_id=approval_id, decision=d, user=hook.link_user)}"
                for d in ("approve", "deny")
            }
        delivery = Delivery(webhook_id=hook.id or 0, event=event, payload=payload(approval, event, links=links))
        session.add(delivery)
        deliveries.append(delivery)
    session.flush()
    return deliveries


def send(hook: Webhook, delivery: Delivery, *, timeout_s: float = 10.0) -> None:
    """POST one delivery; raises httpx.HTTPError on a network error or a non-2xx answer."""
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "fleetgate-webhook/0.1",
        "X-Fleetgate-Event": delivery.event,
        "X-Fleetgate-Delivery": str(delivery.id),
        "X-Fleetgate-Timestamp": stamp,
        "X-Fleetgate-Signature": signature(hook.secret, stamp, body),
    }
    response = httpx.post(hook.url, content=body, headers=headers, timeout=timeout_s)
    response.raise_for_status()
