"""What the console reads about a sandbox's egress: its usage against the budget, and its egress actions picked
out by tool (fast tier: a real app on uvicorn over an in-memory engine; the calls go through the runtime flows
the egress door uses)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controller.auth import SANDBOX_TOKEN_PREFIX, ensure_user, hash_token, new_secret
from controller.models import Role, Sandbox, SandboxCreate
from controller.oversight.policy import Risk
from controller.oversight.usage import CONNECTION, MODEL
from tests.controller.served import Served, served_fleet

EGRESS_TOOLS = "net.connect,http.request,model.request"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_fleet(tmp_path_factory.mktemp("egress-views") / "home") as served:
        yield served


@pytest.fixture
def viewer(api: Served) -> Iterator[httpx.Client]:
    with api.http(Role.viewer) as client:
        yield client


class Agent:
    """A sandbox on the fast fleet, calling out the way its egress door would."""

    def __init__(self, api: Served, **create: Any) -> None:
        self.fleet = api.fleet
        with self.fleet.tx.write() as t:
            owner = ensure_user(session=t.session, name="olivia", role=Role.operator)
        body = SandboxCreate(policy={"default": "allow", "rules": []}, **create)
        self.id = self.fleet.sandboxes.create(body, owner=owner).id
        self.secret = new_secret(SANDBOX_TOKEN_PREFIX)
        with self.fleet.tx.write() as t:
            row = t.session.get(Sandbox, self.id)
            assert row is not None
            row.token_hash = hash_token(self.secret)

    def call(self, tool: str, args: dict[str, Any], kind: str = CONNECTION, **result: Any) -> int:
        """One call let through and finished, carrying `result`; its action id."""
        reply = self.fleet.runtime.propose(
            secret=self.secret, sandbox_id=self.id, tool=tool, args=args, risk=Risk.medium, charge_as=kind
        )
        assert reply["status"] == "allowed", reply
        self.fleet.runtime.egress_done([(self.id, reply["action_id"], {"bytes_in": 0, "bytes_out": 0, **result})])
        return int(reply["action_id"])

    def gate(self, tool: str, **args: Any) -> None:
        self.fleet.runtime.propose(
            secret=self.secret, sandbox_id=self.id, tool=tool, args=args, risk=Risk.low, brokered=False
        )


def tools_of(viewer: httpx.Client, sandbox_id: str, tool: str) -> list[str]:
    response = viewer.get("/api/v1/actions", params={"sandbox": sandbox_id, "tool": tool})
    assert response.status_code == 200, response.text
    return [a["tool"] for a in response.json()["items"]]


def test_usage_counts_what_the_calls_carried_against_the_sandbox_budget(api: Served, viewer: httpx.Client) -> None:
    agent = Agent(api)
    settings = api.fleet.settings
    budget = {
        "model_requests": settings.model_requests_per_sandbox,
        "model_tokens": settings.model_tokens_per_sandbox,
        "connections": settings.egress_connections_per_sandbox,
        "bytes": settings.egress_bytes_per_sandbox,
    }
    zero = dict.fromkeys(("model_requests", "input_tokens", "output_tokens", "connections", "bytes_in", "bytes_out"), 0)
    assert viewer.get(f"/api/v1/sandboxes/{agent.id}/usage").json() == {**zero, "budget": budget}

    model = {"service": "claude", "model": "claude-x", "method": "POST", "path": "/v1/messages"}
    tokens = {"input_tokens": 12, "output_tokens": 34}
    agent.call("model.request", model, MODEL, bytes_in=2048, bytes_out=300, status=200, tokens=tokens)
    agent.call("net.connect", {"host": "example.org", "port": 443}, bytes_in=5000, bytes_out=700, host="example.org")

    assert viewer.get(f"/api/v1/sandboxes/{agent.id}/usage").json() == {
        "model_requests": 1,
        "input_tokens": 12,
        "output_tokens": 34,
        "connections": 2,
        "bytes_in": 7048,
        "bytes_out": 1000,
        "budget": budget,
    }
    own = Agent(api, budget={"connections": 5, "model_tokens": 0})
    assert viewer.get(f"/api/v1/sandboxes/{own.id}/usage").json()["budget"] == {
        **budget,
        "connections": 5,
        "model_tokens": 0,
    }
    missing = viewer.get("/api/v1/sandboxes/sb_0000000000ff/usage")
    assert missing.status_code == 404
    assert "sb_0000000000ff" in missing.json()["detail"]


def test_a_finished_call_keeps_its_result_on_its_action(api: Served, viewer: httpx.Client) -> None:
    agent = Agent(api)
    action_id = agent.call(
        "http.request",
        {"method": "GET", "url": "http://example.org/", "host": "example.org", "port": 80},
        bytes_in=900,
        bytes_out=80,
        status=404,
        host="example.org",
    )
    action = viewer.get(f"/api/v1/actions/{action_id}").json()
    assert action["status"] == "allowed"
    assert action["result"] == {"bytes_in": 900, "bytes_out": 80, "status": 404, "host": "example.org"}


def test_the_tool_filter_takes_several_tools_or_a_prefix(api: Served, viewer: httpx.Client) -> None:
    agent = Agent(api)
    agent.gate("shell", command="ls")
    agent.call("net.connect", {"host": "example.org", "port": 443})
    agent.gate("read_file", path="notes.txt")
    api.fleet.runtime.egress_refused(
        agent.id, "http.request", {"method": "GET", "url": "http://10.1.2.3/"}, "10.1.2.3 is an internal address"
    )
    agent.gate("readXfile", path="notes.txt")

    assert tools_of(viewer, agent.id, EGRESS_TOOLS) == ["http.request", "net.connect"]  # newest first
    assert tools_of(viewer, agent.id, "net.*") == ["net.connect"]
    assert tools_of(viewer, agent.id, "read_*") == ["read_file"]  # `_` is a character, not a wildcard
    assert tools_of(viewer, agent.id, "shell") == ["shell"]
    assert tools_of(viewer, agent.id, " net.connect , shell ") == ["net.connect", "shell"]
    assert len(tools_of(viewer, agent.id, ",")) == 5  # names nothing: no filter
    refused = viewer.get("/api/v1/actions", params={"sandbox": agent.id, "tool": "http.request"}).json()["items"][0]
    assert (refused["status"], refused["decided_by"]) == ("denied", "guard")
    too_long = viewer.get("/api/v1/actions", params={"tool": "x" * 1001})
    assert too_long.status_code == 422


def test_an_operator_raises_a_spent_budget_and_the_agent_goes_on(api: Served, viewer: httpx.Client) -> None:
    agent = Agent(api, budget={"model_requests": 1})
    agent.call("model.request", {"service": "m", "model": "x"}, kind=MODEL)
    refused = agent.fleet.runtime.propose(
        secret=agent.secret, sandbox_id=agent.id, tool="model.request", args={}, risk=Risk.low, charge_as=MODEL
    )
    assert refused["decided_by"] == "budget"
    assert viewer.put(f"/api/v1/sandboxes/{agent.id}/budget", json={"model_requests": 3}).status_code == 403
    with api.http(Role.operator) as operator:
        raised = operator.put(f"/api/v1/sandboxes/{agent.id}/budget", json={"model_requests": 3})
        assert raised.status_code == 200, raised.text
        assert raised.json()["budget"]["model_requests"] == 3
        assert raised.json()["budget"]["connections"] == agent.fleet.settings.egress_connections_per_sandbox
        empty = operator.put(f"/api/v1/sandboxes/{agent.id}/budget", json={})
        assert empty.status_code == 422
        assert "at least one of" in empty.json()["detail"]
        assert operator.put(f"/api/v1/sandboxes/{agent.id}/budget", json={"bytes": -1}).status_code == 422
        assert operator.put("/api/v1/sandboxes/sb_000000000000/budget", json={"bytes": 1}).status_code == 404
    agent.call("model.request", {"service": "m", "model": "x"}, kind=MODEL)
    entries = viewer.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    assert any(e["event"] == "sandbox.budget" and e["subject"] == f"sandbox:{agent.id}" for e in entries)


def test_fleetgate_sandbox_budget_shows_and_changes_it(api: Served) -> None:
    from typer.testing import CliRunner

    from controller.cli import app

    agent = Agent(api, budget={"model_requests": 2})
    agent.call("model.request", {"service": "m", "model": "x"}, kind=MODEL)
    env = api.cli_env(Role.operator)
    shown = CliRunner().invoke(app, ["sandbox", "budget", agent.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "model requests" in shown.output
    assert " 1 of 2" in shown.output
    changed = CliRunner().invoke(app, ["sandbox", "budget", agent.id, "--model-requests", "0"], env=env)
    assert changed.exit_code == 0, changed.output
    assert "1 of no limit" in changed.output
