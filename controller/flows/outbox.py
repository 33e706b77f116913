"""Work the worker carries out after a decision: deadlines, webhook notifications, brokered actions. Each step
is safe to run twice (claims are compare-and-set), because Celery delivers at least once and the sweep queues
again whatever never reached a worker.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from controller.config import Settings
from controller.effects import Enqueue, Wake, notify, run_broker
from controller.flows.unit import Transactions
from controller.models import Sandbox, utcnow
from controller.names import Task
from controller.oversight import audit
from controller.oversight.approvals import effects_of, expire_due
from controller.oversight.brokers import NEEDS_WORKSPACE, BrokerContext, broker_for
from controller.oversight.models import Action, Delivery, Webhook
from controller.oversight.notify import BACKOFF_S, claim, plan_deliveries, send, stranded
from controller.oversight.services import ServiceTarget, reveal_secret, service_target
from controller.sandboxes.hosts import Hosts
from controller.sandboxes.provision import Provisioner
from controller.secrets import SecretBox

BROKER_STUCK_AFTER = timedelta(seconds=30)


class OutboxFlows:
    def __init__(self, *, tx: Transactions, settings: Settings, hosts: Hosts, provisioner: Provisioner) -> None:
        self.tx = tx
        self.settings = settings
        self.hosts = hosts
        self.provisioner = provisioner
        self.box = SecretBox(settings.secrets_key)

    def sweep(self) -> list[int]:
        """Apply the default outcome to approvals past their deadline (waking their agents), and queue again the
        work whose task never reached the worker (Redis was away when it was due). Returns the expired ids."""
        with self.tx.write() as t:
            decided = expire_due(t.session)
            t.effects += effects_of(decided)
            stuck = t.session.exec(
                select(Action.id).where(
                    Action.broker_status == "queued", col(Action.decided_at) < utcnow() - BROKER_STUCK_AFTER
                )
            ).all()
            t.effects += [run_broker(action_id or 0) for action_id in stuck]
            # A notification is claimed by compare-and-set, so queueing one twice is harmless; a delivery is sent
            # at least once (receivers dedupe by X-Fleetgate-Delivery), so it is given a minute before it counts.
            notes, sends = stranded(t.session, notes_after=timedelta(seconds=5), sends_after=timedelta(seconds=60))
            t.effects += [notify(approval_id, event) for approval_id, event in notes]
            t.effects += [Enqueue(Task.DELIVER, (delivery_id,)) for delivery_id in sends]
        return [d.approval.id or 0 for d in decided]

    def plan_notifications(self, approval_id: int, event: str) -> list[int]:
        """One delivery per subscriber of the event, each sent by its own task; nothing if planned already."""
        with self.tx.write() as t:
            if not claim(t.session, approval_id, event):
                return []
            deliveries = plan_deliveries(
                t.session,
                approval_id=approval_id,
                event=event,
                base_url=self.settings.public_url,
                home=self.settings.home,
            )
            ids = [d.id or 0 for d in deliveries]
            t.effects += [Enqueue(Task.DELIVER, (delivery_id,)) for delivery_id in ids]
        return ids

    def deliver(self, delivery_id: int, *, attempt: int) -> str | httpx.HTTPError:
        """Send one delivery and keep its outcome on the row; the error when it should be retried."""
        with self.tx.write() as t:
            session = t.session
            delivery = session.get(Delivery, delivery_id)
            hook = session.get(Webhook, delivery.webhook_id) if delivery else None
            if delivery is None or hook is None or delivery.status == "delivered":
                return "skipped"
            delivery.attempts += 1
            try:
                send(hook, delivery)
            except httpx.HTTPError as e:
                delivery.last_error = str(e)[:500]
                last = attempt >= len(BACKOFF_S)
                delivery.status = "failed" if last else "retrying"
                session.add(delivery)
                return "failed" if last else e
            delivery.status, delivery.delivered_at = "delivered", utcnow()
            session.add(delivery)
        return "delivered"

    def run_broker(self, action_id: int) -> str:
        """Carry out an allowed brokered action once (queued -> running -> done|failed) and wake its agent."""
        with self.tx.write() as t:
            claimed = t.session.execute(
                sa.update(Action)
                .where(col(Action.id) == action_id, col(Action.broker_status) == "queued")
                .values(broker_status="running")
            )
            action = t.session.get(Action, action_id)
            if claimed.rowcount != 1 or action is None:  # type: ignore[attr-defined]
                return "skipped"
            tool, sandbox_id = action.tool, action.sandbox_id
            args = action.final_args if action.final_args is not None else action.args
        result, status = self._carry_out(tool, args, sandbox_id)
        with self.tx.write() as t:
            action = t.session.get(Action, action_id)
            assert action is not None
            action.broker_status, action.result = status, result
            t.session.add(action)
            audit.append(
                t.session,
                actor="controller",
                event=f"broker.{status}",
                subject=f"action:{action_id}",
                tool=tool,
                result=_for_audit(result),
            )
            t.effects.append(Wake((f"action:{action_id}",)))
        return status

    def _carry_out(self, tool: str, args: dict[str, Any], sandbox_id: str) -> tuple[dict[str, Any], str]:
        try:
            return broker_for(tool)(self._context(tool, sandbox_id), args), "done"
        except Exception as e:  # any broker failure is reported to the agent, never retried blindly
            return {"error": str(e)[:500]}, "failed"

    def _context(self, tool: str, sandbox_id: str) -> BrokerContext:
        """What the broker works with; the workspace is looked up only for a broker that reads it."""
        return BrokerContext(
            settings=self.settings,
            sandbox_id=sandbox_id,
            secret=self._secret,
            service=self._service,
            workspace=self._workspace(sandbox_id) if tool in NEEDS_WORKSPACE else None,
        )

    def _secret(self, name: str) -> str:
        with self.tx.read() as session:
            return reveal_secret(session, self.box, name)

    def _service(self, name: str) -> ServiceTarget:
        with self.tx.read() as session:
            return service_target(session, self.box, name)

    def _workspace(self, sandbox_id: str) -> Path | None:
        with self.tx.read() as session:
            sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None:
            return None
        return self.provisioner.workspace_folder(self.hosts.get(sandbox.host), sandbox)


def _for_audit(result: dict[str, Any]) -> dict[str, Any]:
    """A broker's result as the audit log keeps it: a response body only by its size (the action row has it)."""
    kept = {key: value for key, value in result.items() if key not in ("body", "body_base64")}
    for key in ("body", "body_base64"):
        if isinstance(result.get(key), str):
            kept[f"{key}_chars"] = len(result[key])
    return kept
