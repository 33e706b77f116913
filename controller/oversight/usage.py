"""What a sandbox spends through the egress door, and the budgets that stop a runaway agent.

Every model call, proxied connection and service call is charged when it is let through (in the transaction that
decides it), and what it carried is added when it ends: bytes both ways, and the tokens a model answer reports.
A sandbox past a budget is refused with a message the agent can read, and handed to a person once (an
escalation, which pauses it) rather than on every refused call.

`TokenCounter` reads the usage a model API reports, from a JSON answer or a server-sent event stream, as the
bytes go by: Anthropic's `message_start` / `message_delta`, OpenAI's Responses `response.completed` and Chat
Completions' final chunk all carry a `usage` object; the largest figure seen for each counter wins, since the
figures are running totals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, select

from controller.effects import Effect
from controller.events.store import emit
from controller.models import Sandbox, utcnow
from controller.names import EventKind
from controller.oversight.approvals import open_item
from controller.oversight.gate import record_decision
from controller.oversight.models import Action, ActionStatus, Approval, ApprovalKind, ApprovalStatus, SandboxUsage

MODEL = "model"
CONNECTION = "connection"
_SCAN_LIMIT = 1 << 16  # an event line longer than this is not a usage report


@dataclass(frozen=True)
class Budget:
    """Per-sandbox limits; 0 is no limit."""

    model_requests: int = 0
    model_tokens: int = 0
    connections: int = 0
    bytes: int = 0

    def but(self, figures: dict[str, int] | None) -> Budget:
        """This budget with a sandbox's own figures in place of the defaults."""
        return replace(self, **{k: v for k, v in (figures or {}).items() if k in _FIGURES})


_FIGURES = ("model_requests", "model_tokens", "connections", "bytes")


@dataclass(frozen=True)
class Refusal:
    message: str
    escalation: Approval | None
    effects: list[Effect]


class Spent(Protocol):
    model_requests: int
    input_tokens: int
    output_tokens: int
    connections: int
    bytes_in: int
    bytes_out: int


def over_budget(usage: Spent, budget: Budget, kind: str) -> str | None:
    """Why one more call of this kind is refused, or None."""
    tokens = usage.input_tokens + usage.output_tokens
    if kind == MODEL:
        if budget.model_requests and usage.model_requests >= budget.model_requests:
            return f"the sandbox's model request budget is spent ({usage.model_requests} of {budget.model_requests})"
        if budget.model_tokens and tokens >= budget.model_tokens:
            return f"the sandbox's model token budget is spent ({tokens} of {budget.model_tokens} tokens)"
    if budget.connections and usage.connections >= budget.connections:
        return f"the sandbox's connection budget is spent ({usage.connections} of {budget.connections})"
    moved = usage.bytes_in + usage.bytes_out
    if budget.bytes and moved >= budget.bytes:
        return f"the sandbox's egress byte budget is spent ({moved} of {budget.bytes} bytes)"
    return None


def charge(session: Session, sandbox_id: str, defaults: Budget, kind: str) -> Refusal | None:
    """Count one more call, or refuse it (and hand the sandbox to a person, once per spent budget). On the egress
    door's path for every call: statements built once, one read and one write."""
    conn = session.connection()
    row = conn.execute(_SPENT, {"sid": sandbox_id}).one()
    budget = defaults.but(row.budget)
    spent: Spent = row if row.has_usage is not None else _NOTHING
    why = over_budget(spent, budget, kind)
    if why is None:
        counted = {"sid": sandbox_id, "models": int(kind == MODEL), "now": utcnow()}
        if row.has_usage is None:
            conn.execute(_FIRST, {**_ZERO, "sandbox_id": sandbox_id, "model_requests": counted["models"],
                                  "connections": 1, "updated_at": counted["now"]})  # fmt: skip
        else:
            conn.execute(_COUNT, counted)
        return None
    pending = session.exec(
        select(Approval.id).where(
            Approval.sandbox_id == sandbox_id,
            Approval.kind == ApprovalKind.escalation,
            Approval.status == ApprovalStatus.pending,
        )
    ).first()
    if pending is not None:
        return Refusal(f"{why}; a person has been asked already", None, [])
    item, effects = open_item(
        session,
        kind=ApprovalKind.escalation,
        sandbox_id=sandbox_id,
        requester_id=None,
        summary=f"budget: {why}",
        data={"budget": kind},
        actor="controller",
    )
    return Refusal(f"{why}; the sandbox is handed to a person (escalation {item.id})", item, effects)


def record_refusal(
    session: Session, sandbox_id: str, *, tool: str, args: dict[str, Any], message: str, by: str = "budget"
) -> Action:
    """A call refused before any policy (its budget spent, or a destination in the refused ranges: `by` "guard")
    is an action like any other: in the actions, the stream and the audit."""
    now = utcnow()
    action = Action(
        sandbox_id=sandbox_id,
        tool=tool,
        args=args,
        risk="low",
        status=ActionStatus.denied,
        message=message,
        decided_by=by,
        decision={"reason": message},
        created_at=now,
        decided_at=now,
    )
    session.add(action)
    session.flush()
    record_decision(session, action.model_dump(), reason=message)
    return action


def record_traffic(session: Session, finished: list[tuple[str, int, dict[str, Any]]]) -> None:
    """What finished calls carried ((sandbox, action, result) each): kept on their actions, added to their
    sandboxes' totals, and shown live, in one go (the egress door hands them over in batches)."""
    conn = session.connection()
    conn.execute(_RESULT, [{"aid": action_id, "res": result} for _, action_id, result in finished])
    totals: dict[str, dict[str, Any]] = {}
    for sandbox_id, action_id, result in finished:
        tokens = result.get("tokens") or {}
        total = totals.setdefault(sandbox_id, {"sid": sandbox_id, "bin": 0, "bout": 0, "tin": 0, "tout": 0})
        total["bin"] += int(result.get("bytes_in", 0))
        total["bout"] += int(result.get("bytes_out", 0))
        total["tin"] += int(tokens.get("input_tokens", 0))
        total["tout"] += int(tokens.get("output_tokens", 0))
        emit(session, sandbox_id, EventKind.EGRESS, action_id=action_id, **result)
    now = utcnow()
    conn.execute(_TRAFFIC, [{**total, "now": now} for total in totals.values()])


_usage: sa.Table = SandboxUsage.__table__  # type: ignore[attr-defined]
_sandboxes: sa.Table = Sandbox.__table__  # type: ignore[attr-defined]
_actions: sa.Table = Action.__table__  # type: ignore[attr-defined]
_SPENT = (
    sa.select(
        _sandboxes.c.budget,
        _usage.c.sandbox_id.label("has_usage"),
        _usage.c.model_requests,
        _usage.c.input_tokens,
        _usage.c.output_tokens,
        _usage.c.connections,
        _usage.c.bytes_in,
        _usage.c.bytes_out,
    )
    .select_from(_sandboxes.outerjoin(_usage, _usage.c.sandbox_id == _sandboxes.c.id))
    .where(_sandboxes.c.id == sa.bindparam("sid"))
)
_ZERO = {"model_requests": 0, "input_tokens": 0, "output_tokens": 0, "connections": 0, "bytes_in": 0, "bytes_out": 0}
_NOTHING = SandboxUsage(sandbox_id="")
_FIRST = sa.insert(_usage)
_COUNT = (
    sa.update(_usage)
    .where(_usage.c.sandbox_id == sa.bindparam("sid"))
    .values(
        model_requests=_usage.c.model_requests + sa.bindparam("models"),
        connections=_usage.c.connections + 1,
        updated_at=sa.bindparam("now"),
    )
)
_TRAFFIC = (
    sa.update(_usage)
    .where(_usage.c.sandbox_id == sa.bindparam("sid"))
    .values(
        bytes_in=_usage.c.bytes_in + sa.bindparam("bin"),
        bytes_out=_usage.c.bytes_out + sa.bindparam("bout"),
        input_tokens=_usage.c.input_tokens + sa.bindparam("tin"),
        output_tokens=_usage.c.output_tokens + sa.bindparam("tout"),
        updated_at=sa.bindparam("now"),
    )
)
_RESULT = (
    sa.update(_actions)
    .where(_actions.c.id == sa.bindparam("aid"))
    .values(result=sa.bindparam("res", type_=_actions.c.result.type))
)


def usage_view(row: SandboxUsage | None, budget: Budget) -> dict[str, Any]:
    """A sandbox's spending with its budget, for the API and the console."""
    row = row or SandboxUsage(sandbox_id="")
    return {
        "model_requests": row.model_requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "connections": row.connections,
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "budget": {
            "model_requests": budget.model_requests,
            "model_tokens": budget.model_tokens,
            "connections": budget.connections,
            "bytes": budget.bytes,
        },
    }


class TokenCounter:
    """The token usage a model answer reports, read from its bytes as they stream past."""

    def __init__(self) -> None:
        self.tokens: dict[str, int] = {}
        self._pending = b""
        self._whole = bytearray()

    def feed(self, chunk: bytes) -> None:
        if len(self._whole) < _SCAN_LIMIT * 16:
            self._whole += chunk
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        if len(self._pending) > _SCAN_LIMIT:
            self._pending = b""
        for line in lines:
            if line.startswith(b"data:") and b"usage" in line and len(line) < _SCAN_LIMIT:
                self._take(line[5:])

    def finish(self) -> dict[str, int]:
        """The counts; a JSON answer (no event stream) is read whole here."""
        if self._pending.startswith(b"data:"):
            self._take(self._pending[5:])
        if not self.tokens and self._whole.lstrip().startswith(b"{"):
            self._take(bytes(self._whole))
        return dict(self.tokens)

    def _take(self, text: bytes) -> None:
        try:
            value = json.loads(text)
        except ValueError:
            return
        for usage in _usages(value):
            self._count(usage, "input_tokens", "input_tokens", "prompt_tokens")
            self._count(usage, "output_tokens", "output_tokens", "completion_tokens")

    def _count(self, usage: dict[str, Any], name: str, *keys: str) -> None:
        for key in keys:
            figure = usage.get(key)
            if isinstance(figure, int) and not isinstance(figure, bool) and figure >= 0:
                self.tokens[name] = max(self.tokens.get(name, 0), figure)


def _usages(value: Any, depth: int = 0) -> list[dict[str, Any]]:
    """Every `usage` object in an event, at most three levels down (message.usage, response.usage)."""
    if not isinstance(value, dict) or depth > 3:
        return []
    found = [value["usage"]] if isinstance(value.get("usage"), dict) else []
    for inner in value.values():
        if isinstance(inner, dict):
            found += _usages(inner, depth + 1)
    return found
