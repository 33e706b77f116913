"""The egress door end to end in one process: the sandbox-side relay (agent_runtime/egress.py) on loopback, the
runtime socket with its door (gateway/door.py), the real gateway app, and upstreams on loopback.

No container here: what a real sandbox adds (no network but loopback, the token it holds) is proven by the
integration tests in tests/controller/test_egress_sandboxes.py. This is the door's behaviour, quickly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select

from agent_runtime import egress as relay
from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret, user_for_token
from controller.fleet import Fleet
from controller.gateway.app import create_gateway
from controller.gateway.door import door_for
from controller.models import Role, Sandbox, SandboxStatus, ServiceCreate, ServiceKind
from controller.oversight.models import Action, Approval, AuditEntry, DecisionRequest, SandboxUsage
from tests.controller.served import fast_fleet
from tests.upstreams import ModelServer

SECRET = "sk-ant-real-key-0123456789"
SANDBOX = "sb_00000000e9e5"


@dataclass
class Door:
    fleet: Fleet
    token: str
    proxy: str
    services: str
    model: ModelServer
    allowed: ModelServer

    def actions(self, tool: str | None = None) -> list[Action]:
        with Session(self.fleet.db) as session:
            rows = list(session.exec(select(Action).where(Action.sandbox_id == SANDBOX).order_by(Action.id)))  # type: ignore[arg-type]
        return [a for a in rows if tool is None or a.tool == tool]

    def usage(self) -> SandboxUsage:
        with Session(self.fleet.db) as session:
            row = session.get(SandboxUsage, SANDBOX)
            assert row is not None
            return row

    def proxied(self) -> httpx.Client:
        return httpx.Client(proxy=self.proxy, timeout=30, trust_env=False)

    def decide(self, decision: str, **extra: Any) -> None:
        with Session(self.fleet.db) as session:
            pending = session.exec(select(Approval).where(Approval.status == "pending")).all()
        assert len(pending) == 1, pending
        admin = self.fleet.admin.mint_token(actor="test", name="boss", role=Role.admin, label="t")
        with Session(self.fleet.db, expire_on_commit=False) as session:
            user = user_for_token(session=session, secret=admin.token)
            session.expunge(user)
        self.fleet.decisions.decide(pending[0].id or 0, user=user, request=DecisionRequest(decision=decision, **extra))


@pytest.fixture
def door(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Door]:
    model, allowed = ModelServer(gap_s=0.25).start(), ModelServer().start()
    budget = getattr(request, "param", {})
    fleet = fast_fleet(
        tmp_path, instance="egress", egress_allow=f"127.0.0.1:{allowed.port},127.0.0.1:{model.port}", **budget
    )
    token = new_secret(SANDBOX_TOKEN_PREFIX)
    with Session(fleet.db) as session:
        session.add(
            Sandbox(
                id=SANDBOX,
                status=SandboxStatus.running,
                image="x",
                cpus=1,
                memory_mb=64,
                pids=64,
                token_hash=hash_token(token),
                policy={
                    "default": "deny",
                    "rules": [
                        {"tool": "model.request", "decision": "allow"},
                        {"tool": "net.connect", "args": {"port": allowed.port}, "decision": "allow"},
                        {"tool": "http.request", "args": {"port": allowed.port}, "decision": "allow"},
                        {"tool": "net.connect", "args": {"port": model.port}, "decision": "ask"},
                    ],
                },
            )
        )
        session.commit()
    fleet.admin.add_service(
        ServiceCreate(name="claude", kind=ServiceKind.anthropic, upstream=model.url, secret=SECRET), actor="admin"
    )
    app = create_gateway(fleet, fleet.events)
    path = tmp_path / "gateway" / "runtime.sock"
    server = uvicorn.Server(
        uvicorn.Config(app, uds=str(path), log_level="warning", http=door_for(app.state.egress.handle))
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    stop = threading.Event()
    creds = {"sandbox_id": SANDBOX, "token": token, "socket": str(path)}
    proxy, services = relay.start(creds, stop, proxy=("127.0.0.1", 0), services=("127.0.0.1", 0))
    yield Door(
        fleet,
        token,
        f"http://127.0.0.1:{proxy.address[1]}",
        f"http://127.0.0.1:{services.address[1]}",
        model,
        allowed,
    )
    stop.set()
    proxy.close()
    services.close()
    server.should_exit = True
    thread.join(10)
    model.stop()
    allowed.stop()
    fleet.db.dispose()


def stream_message(door: Door) -> list[tuple[float, str]]:
    """A streamed Messages call through the service door: (arrival time, event line) for each event."""
    got = []
    body = {"model": "claude-test-1", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "fleetgate-placeholder", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{door.services}/claude/v1/messages?beta=true", json=body, headers=headers) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("event:"):
                got.append((time.monotonic(), line))
    return got


def test_a_model_call_gets_the_real_key_and_streams_as_produced(door: Door) -> None:
    events = stream_message(door)
    assert events[0][1] == "event: message_start"
    assert len(events) == 8
    # Five words 0.25 s apart: held to the end, they would arrive together.
    deltas = [t for t, e in events if e == "event: content_block_delta"]
    assert deltas[-1] - deltas[0] > 0.75
    seen = door.model.seen[-1]
    assert seen.headers["x-api-key"] == SECRET
    assert seen.path == "/v1/messages?beta=true"
    [action] = door.actions("model.request")
    assert action.args == {
        "service": "claude",
        "model": "claude-test-1",
        "method": "POST",
        "path": "/v1/messages?beta=true",
    }
    assert action.status == "allowed"
    _wait(lambda: door.actions("model.request")[0].result is not None)
    result = door.actions("model.request")[0].result or {}
    assert result["tokens"] == {"input_tokens": 11, "output_tokens": 5}
    assert result["bytes_in"] > 500
    usage = door.usage()
    assert (usage.model_requests, usage.input_tokens, usage.output_tokens) == (1, 11, 5)


def test_the_secret_is_nowhere_the_sandbox_or_a_reviewer_can_read(door: Door) -> None:
    stream_message(door)
    _wait(lambda: door.actions("model.request")[0].result is not None)
    with Session(door.fleet.db) as session:
        kept = json.dumps([a.model_dump(mode="json") for a in session.exec(select(AuditEntry))])
        kept += json.dumps([a.model_dump(mode="json") for a in session.exec(select(Action))])
    assert SECRET not in kept
    assert SECRET.encode() not in (door.fleet.settings.home / "fleetgate.db").read_bytes()


def test_a_model_request_denied_by_policy_reads_as_an_anthropic_error(door: Door) -> None:
    door.fleet.admin.add_service(
        ServiceCreate(name="other", kind=ServiceKind.http, upstream=door.model.url, secret="s", header="x-token"),
        actor="admin",
    )
    answer = httpx.post(f"{door.services}/other/echo", content=b"hello")
    assert answer.status_code == 403
    assert "http.request denied" in answer.json()["detail"]
    answer = httpx.post(f"{door.services}/nope/v1/messages", json={})
    assert answer.status_code == 404
    assert "nope" in answer.text


def test_an_allowed_destination_answers_through_the_proxy(door: Door) -> None:
    with door.proxied() as client:
        answer = client.get(f"{door.allowed.url}/bytes/1000")
    assert answer.status_code == 200
    assert len(answer.content) == 1000
    [action] = door.actions("http.request")
    assert action.args["url"] == f"{door.allowed.url}/bytes/1000"
    _wait(lambda: door.actions("http.request")[0].result is not None)
    assert (door.actions("http.request")[0].result or {})["bytes_in"] >= 1000


def test_connect_tunnels_bytes_both_ways(door: Door) -> None:
    with socket.create_connection(("127.0.0.1", int(door.proxy.rsplit(":", 1)[1]))) as s:
        s.sendall(f"CONNECT 127.0.0.1:{door.allowed.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.endswith(b"xxxxx")
    assert door.actions("net.connect")[0].status == "allowed"


@pytest.mark.parametrize(
    "where",
    ["127.0.0.1:8700", "localhost:6379", "0x7f000001:80", "10.0.0.1:443", "169.254.169.254:80", "[::1]:22"],
)
def test_internal_destinations_are_refused_with_a_reason(door: Door, where: str) -> None:
    with socket.create_connection(("127.0.0.1", int(door.proxy.rsplit(":", 1)[1]))) as s:
        s.sendall(f"CONNECT {where} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"sandboxes may not reach it" in answer
    [action] = door.actions("net.connect")
    assert (action.status, action.decided_by) == ("denied", "guard")


def test_an_ask_holds_the_connection_until_a_person_decides_and_a_grant_remembers(door: Door) -> None:
    def connect(results: list[bytes]) -> threading.Thread:
        def run() -> None:
            with socket.create_connection(("127.0.0.1", int(door.proxy.rsplit(":", 1)[1]))) as s:
                s.sendall(f"CONNECT 127.0.0.1:{door.model.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                results.append(s.recv(4096))

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    denied: list[bytes] = []
    thread = connect(denied)
    _wait(lambda: len(door.actions("net.connect")) == 1)
    time.sleep(0.3)
    assert not denied  # held while the person decides
    door.decide("deny", message="not today")
    thread.join(10)
    assert denied[0].startswith(b"HTTP/1.1 403")
    assert b"not today" in denied[0]

    edited: list[bytes] = []  # the door cannot rewrite a connection: an edited approval is a clear refusal
    thread = connect(edited)
    _wait(lambda: len(door.actions("net.connect")) == 2)
    door.decide("approve", args={"host": "127.0.0.1", "port": door.allowed.port})
    thread.join(10)
    assert edited[0].startswith(b"HTTP/1.1 403")
    assert b"edited arguments" in edited[0]

    approved: list[bytes] = []
    thread = connect(approved)
    _wait(lambda: len(door.actions("net.connect")) == 3)
    door.decide("approve", remember="sandbox")
    thread.join(10)
    assert approved[0].startswith(b"HTTP/1.1 200")

    remembered: list[bytes] = []
    connect(remembered).join(10)
    assert remembered[0].startswith(b"HTTP/1.1 200")
    assert door.actions("net.connect")[-1].decided_by == "grant"


def test_malformed_and_oversized_requests_get_clear_errors_and_the_door_keeps_serving(door: Door) -> None:
    port = int(door.services.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    big = b"x" * (door.fleet.settings.max_service_body_bytes + 1)
    answer = httpx.post(f"{door.services}/claude/v1/messages", content=big, timeout=30)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"
    with door.proxied() as client:
        assert client.get(f"{door.allowed.url}/bytes/10").status_code == 200
    assert len(stream_message(door)) == 8


@pytest.mark.parametrize("door", [{"model_requests_per_sandbox": 2}], indirect=True)
def test_past_its_request_budget_a_sandbox_is_refused_and_handed_to_a_person(door: Door) -> None:
    for _ in range(2):
        assert httpx.post(f"{door.services}/claude/v1/messages", json={"model": "m"}).status_code == 200
    answer = httpx.post(f"{door.services}/claude/v1/messages", json={"model": "m"})
    assert answer.status_code == 429
    assert "model request budget is spent (2 of 2)" in answer.json()["error"]["message"]
    with Session(door.fleet.db) as session:
        [escalation] = session.exec(select(Approval).where(Approval.kind == "escalation")).all()
    assert "budget" in escalation.summary
    assert door.actions("model.request")[-1].decided_by == "budget"
    assert len(door.model.seen) == 2


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_sandbox_of_its_own_budget_is_held_to_it_rather_than_the_default(door: Door) -> None:
    with Session(door.fleet.db) as session:
        row = session.get(Sandbox, SANDBOX)
        assert row is not None
        row.budget = {"model_requests": 1}
        session.add(row)
        session.commit()
    assert httpx.post(f"{door.services}/claude/v1/messages", json={"model": "m"}).status_code == 200
    answer = httpx.post(f"{door.services}/claude/v1/messages", json={"model": "m"})
    assert answer.status_code == 429
    assert "(1 of 1)" in answer.json()["error"]["message"]


def test_a_budget_in_a_create_request_is_checked_and_kept() -> None:
    from controller.models import BudgetSpec, SandboxCreate

    request = SandboxCreate.model_validate({"budget": {"model_requests": 5, "bytes": 0}})
    assert request.budget == BudgetSpec(model_requests=5, bytes=0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        SandboxCreate.model_validate({"budget": {"model_requests": -1}})
    with pytest.raises(ValueError, match="Extra inputs"):
        SandboxCreate.model_validate({"budget": {"dollars": 5}})
