"""What an agent's runtime asks of the controller through the gateway: propose an action, open a checkpoint or an
escalation, report that it started, is alive, logged something, or exited. Waiting for a decision is the
gateway's long-poll (`gateway.oversight`); it only reads.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from controller.config import Settings
from controller.errors import NotFound
from controller.events.store import emit
from controller.flows.sandboxes import change
from controller.flows.unit import Transactions
from controller.models import Sandbox, SandboxStatus, utcnow
from controller.names import EventKind
from controller.oversight import audit
from controller.oversight.approvals import open_item
from controller.oversight.gate import gate, layers_for, separated, subject_for_token
from controller.oversight.models import Action, ApprovalKind
from controller.oversight.policy import Risk
from controller.oversight.usage import Budget, charge, record_refusal, record_traffic


class RuntimeFlows:
    def __init__(self, *, tx: Transactions, settings: Settings) -> None:
        self.tx = tx
        self.settings = settings

    def propose(
        self,
        *,
        secret: str,
        sandbox_id: str,
        tool: str,
        args: dict[str, Any],
        risk: Risk,
        brokered: bool = False,
        charge_as: str | None = None,
    ) -> dict[str, Any]:
        """Decide a proposed action: allowed and denied answer at once, `pending` waits on the approval it opened.
        Every agent's hot path: the token is checked inside the one transaction that decides and records.

        `charge_as` (the egress door's calls): the sandbox's budget is charged first, in the same transaction, so
        two racing calls cannot both take its last unit; past it, the call is refused without asking the policy."""
        with self.tx.write() as t:
            sandbox = subject_for_token(t.session, secret=secret, sandbox_id=sandbox_id)
            refusal = charge(t.session, sandbox.id, self.budget, charge_as) if charge_as else None
            if refusal is not None:
                action = record_refusal(t.session, sandbox.id, tool=tool, args=args, message=refusal.message)
                t.effects += refusal.effects
                return {"action_id": action.id, "status": "denied", "message": refusal.message, "decided_by": "budget"}
            outcome = gate(
                t.session,
                sandbox=sandbox,
                tool=tool,
                args=args,
                risk=risk,
                escalate_after=self.settings.escalate_after_denials,
                brokered=brokered,
            )
            t.effects += outcome.effects
        return outcome.reply()

    @property
    def budget(self) -> Budget:
        """The per-sandbox budget defaults (a sandbox's own figures replace them: `usage.budget_of`)."""
        s = self.settings
        return Budget(
            model_requests=s.model_requests_per_sandbox,
            model_tokens=s.model_tokens_per_sandbox,
            connections=s.egress_connections_per_sandbox,
            bytes=s.egress_bytes_per_sandbox,
        )

    def set_budget(self, sandbox_id: str, figures: dict[str, int], *, actor: str) -> dict[str, int]:
        """Change a sandbox's own budget figures (a person raising what a spent budget stopped, say); the figures
        it leaves out keep their value. Returns the sandbox's own figures."""
        with self.tx.write() as t:
            sandbox = self._sandbox(t.session, sandbox_id)
            before = dict(sandbox.budget or {})
            sandbox.budget = {**before, **figures}
            t.session.add(sandbox)
            audit.append(
                t.session,
                actor=actor,
                event="sandbox.budget",
                subject=f"sandbox:{sandbox_id}",
                before=before,
                after=sandbox.budget,
            )
            return dict(sandbox.budget)

    def egress_refused(self, sandbox_id: str, tool: str, args: dict[str, Any], message: str) -> None:
        """A destination the guard refused (an internal address): a denied action, so people see the attempt."""
        with self.tx.write() as t:
            record_refusal(t.session, sandbox_id, tool=tool, args=args, message=message, by="guard")

    def egress_done(self, finished: list[tuple[str, int, dict[str, Any]]]) -> None:
        """What finished connections and calls carried ((sandbox, action, result) each; result has bytes_in,
        bytes_out and, for model calls, the tokens the answer reported): on their actions, in their sandboxes'
        usage, shown live. One transaction for a batch: the egress door hands them over every few ms."""
        with self.tx.write() as t:
            record_traffic(t.session, finished)

    def open(self, sandbox_id: str, *, kind: ApprovalKind, summary: str, data: dict[str, Any]) -> dict[str, Any]:
        """The agent asks for a checkpoint review or hands itself to a person (which pauses it)."""
        with self.tx.write() as t:
            sandbox = self._sandbox(t.session, sandbox_id)
            requester = sandbox.owner_id if separated(layers_for(t.session, sandbox)) else None
            item, effects = open_item(
                t.session,
                kind=kind,
                sandbox_id=sandbox.id,
                requester_id=requester,
                summary=summary,
                data=data,
                actor=f"sandbox:{sandbox_id}",
            )
            t.effects += effects
        return {"approval_id": item.id, "status": item.status.value}

    def delivered(self, action_id: int) -> None:
        """The agent has its answer: noted for the audit log, once."""
        with self.tx.write() as t:
            action = t.session.get(Action, action_id)
            if action is None or action.delivered_at is not None:
                return
            action.delivered_at = utcnow()
            t.session.add(action)
            audit.append(
                t.session,
                actor=f"sandbox:{action.sandbox_id}",
                event="action.delivered",
                subject=f"action:{action_id}",
                status=action.status.value,
            )

    def hello(self, sandbox_id: str, *, pid: int | None, python: str | None, command: list[str] | None) -> None:
        with self.tx.write() as t:
            sandbox = self._sandbox(t.session, sandbox_id)
            sandbox.last_heartbeat_at = utcnow()
            t.session.add(sandbox)
            emit(t.session, sandbox_id, EventKind.AGENT, state="started", pid=pid, python=python, command=command)

    def heartbeat(self, sandbox_id: str) -> None:
        """Every few seconds from every sandbox: one UPDATE (the gateway has checked the token already)."""
        with self.tx.write() as t:
            t.session.execute(
                sa.update(Sandbox).where(col(Sandbox.id) == sandbox_id).values(last_heartbeat_at=utcnow())
            )

    def log(self, sandbox_id: str, *, message: str, fields: dict[str, Any]) -> None:
        with self.tx.write() as t:
            emit(t.session, sandbox_id, EventKind.LOG, message=message, fields=fields)

    def exited(self, sandbox_id: str, *, exit_code: int) -> SandboxStatus:
        """The agent's command ended: a running sandbox becomes `exited`, and its pending queue items are cancelled."""
        with self.tx.write() as t:
            sandbox = self._sandbox(t.session, sandbox_id)
            emit(t.session, sandbox_id, EventKind.AGENT, state="exited", exit_code=exit_code)
            if sandbox.status == SandboxStatus.running:
                change(
                    t,
                    sandbox,
                    SandboxStatus.exited,
                    actor=f"sandbox:{sandbox_id}",
                    event="sandbox.exited",
                    source="agent",
                    why="the agent's command exited",
                    changes={"exit_code": exit_code},
                    exit_code=exit_code,
                )
            else:
                sandbox.exit_code, sandbox.finished_at = exit_code, sandbox.finished_at or utcnow()
                t.session.add(sandbox)
        return sandbox.status

    @staticmethod
    def _sandbox(session: Session, sandbox_id: str) -> Sandbox:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None:
            raise NotFound(f"no sandbox {sandbox_id}")
        return sandbox
