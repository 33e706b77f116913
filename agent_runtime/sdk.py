"""The runtime SDK for agent code inside a sandbox: ask before acting, pause for review, hand off to a person.

    from agent_runtime import sdk

    args = sdk.gate("git.push", {"remote": "origin", "branch": "main"}, risk="high")
    feedback = sdk.checkpoint("tests pass; about to refactor the parser", {"passed": 41})
    sdk.log("refactor done", files=3)

The SDK is a convenience that asks the controller through the runtime socket; it is not the trust boundary.
Waits survive controller restarts: the SDK keeps asking until the decision, which lives in the controller's
database, reaches it.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from agent_runtime.client import Gateway, GatewayError

__all__ = ["BrokerFailed", "Denied", "GatewayError", "Stopped", "act", "checkpoint", "escalate", "gate", "log"]

WAIT_S = 25
FOREVER = 10.0**9
_local = threading.local()


class Denied(Exception):
    """The action was denied (by policy, a person, or a deadline); `message` says why."""

    def __init__(self, message: str, action_id: Optional[int] = None, decided_by: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.action_id = action_id
        self.decided_by = decided_by


class Stopped(Exception):
    """A reviewer stopped the agent at a checkpoint or an escalation."""


def _gateway() -> Gateway:
    gateway = getattr(_local, "gateway", None)
    if gateway is None:
        gateway = Gateway.from_environment()
        _local.gateway = gateway
    return gateway


def gate(tool: str, args: Optional[Dict[str, Any]] = None, risk: str = "low") -> Dict[str, Any]:
    """Ask to perform `tool` with `args`; returns the args to use (a person may have edited them).

    Raises Denied with the reason or the approver's message. Blocks while a person decides.
    """
    reply = _final(
        _gateway().call("POST", "/actions", {"tool": tool, "args": args or {}, "risk": risk}, retry_for=FOREVER)
    )
    _raise_if_denied(reply)
    return dict(reply.get("args") or {})


def act(tool: str, args: Optional[Dict[str, Any]] = None, risk: str = "low") -> Dict[str, Any]:
    """Have the controller carry out a brokered action (e.g. `email.send`) with credentials the sandbox never
    sees; returns the broker's result. Raises Denied like gate(), and BrokerFailed if the broker failed."""
    body = {"tool": tool, "args": args or {}, "risk": risk, "brokered": True}
    reply = _final(_gateway().call("POST", "/actions", body, retry_for=FOREVER), until_broker=True)
    _raise_if_denied(reply)
    if reply.get("broker_status") == "failed":
        raise BrokerFailed(str((reply.get("result") or {}).get("error", "the broker failed")))
    return dict(reply.get("result") or {})


class BrokerFailed(Exception):
    """The controller tried the brokered action and it failed; the message says why."""


def _final(reply: Dict[str, Any], until_broker: bool = False) -> Dict[str, Any]:
    """Long-poll until the action is decided (and, for brokered ones, carried out)."""
    while reply["status"] == "pending" or (until_broker and reply.get("broker_status") in ("queued", "running")):
        route = "/actions/%d?wait_s=%d" % (reply["action_id"], WAIT_S)
        reply = _gateway().call("GET", route, retry_for=FOREVER)
    return reply


def _raise_if_denied(reply: Dict[str, Any]) -> None:
    if reply["status"] != "allowed":
        raise Denied(reply.get("message") or "denied", reply.get("action_id"), reply.get("decided_by"))


def _wait_for(approval_id: int) -> Dict[str, Any]:
    while True:
        route = "/approvals/%d?wait_s=%d" % (approval_id, WAIT_S)
        reply = _gateway().call("GET", route, retry_for=FOREVER)
        if reply["status"] != "pending":
            return dict(reply)


def checkpoint(summary: str, data: Optional[Dict[str, Any]] = None) -> str:
    """Stop for review after a stage; returns the reviewer's feedback, raises Stopped if they stop the agent."""
    opened = _gateway().call("POST", "/checkpoints", {"summary": summary, "data": data or {}}, retry_for=FOREVER)
    outcome = _wait_for(opened["approval_id"])
    if outcome["status"] != "approved":
        raise Stopped(outcome.get("message") or "stopped at checkpoint: %s" % summary)
    return str(outcome.get("message") or "")


def escalate(reason: str) -> str:
    """Hand off to a person; the sandbox is paused until they resume it (returns their message) or stop it."""
    opened = _gateway().call("POST", "/escalations", {"reason": reason}, retry_for=FOREVER)
    outcome = _wait_for(opened["approval_id"])
    if outcome["status"] != "approved":
        raise Stopped(outcome.get("message") or "stopped after escalation: %s" % reason)
    return str(outcome.get("message") or "")


def log(message: str, **fields: Any) -> None:
    """Add a line to the sandbox's activity (kept by the controller, shown in the console and the audit)."""
    _gateway().call("POST", "/log", {"message": message, "fields": fields})
