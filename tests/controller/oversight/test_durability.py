"""A waiting agent survives kill -9 of the controller, of the Celery worker and of Redis: the decision still
reaches it, exactly once. These tests run their own controller on their own Redis server, so they can kill both."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import Controller, free_port, make_controller, running, wait_for
from tests.controller.oversight.conftest import agent_script, decide, pending_for
from tests.controller.oversight.test_audit_and_notify import Receiver


class RedisServer:
    """A real redis-server of the test's own, on its own port, that the test may kill and start again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.folder)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def own_controller(
    tmp_path: Path, own_redis: RedisServer, docker_client: Any, python_image: str
) -> Iterator[Controller]:
    ctl = make_controller(tmp_path / "ctl", own_redis.url, FLEETGATE_POOL_SIZE="0", FLEETGATE_APPROVAL_SWEEP_S="1")
    with running(ctl, docker_client):
        yield ctl


class SandboxAgent:
    """The agent runs as the sandbox's own command (under the in-sandbox supervisor), so it lives through
    anything that happens to the controller; its output is read back from the controller's logs."""

    def __init__(self, controller: Controller, sandbox_id: str) -> None:
        self.controller = controller
        self.sandbox_id = sandbox_id

    def output(self) -> list[list[Any]]:
        with self.controller.http("admin") as admin:
            items = admin.get(f"/api/v1/sandboxes/{self.sandbox_id}/logs").json()["items"]
        return [json.loads(i["line"]) for i in items if i["stream"] == "stdout"]

    def wait_output(self, count: int = 1, timeout: float = 60) -> list[list[Any]]:
        return wait_for(lambda: len(o := self.output()) >= count and o, timeout=timeout, what="the agent's output")


@pytest.fixture
def waiting_agent(
    own_controller: Controller,
) -> Iterator[Callable[[dict[str, Any]], tuple[SandboxAgent, dict[str, Any]]]]:
    """A sandbox of the own controller whose agent is waiting on an `ask`."""
    body = "try:\n    say('got', sdk.gate('deploy', {'v': 1}))\nexcept sdk.Denied as e:\n    say('denied', e.message)\n"
    with own_controller.http("operator") as operator:

        def start(policy: dict[str, Any]) -> tuple[SandboxAgent, dict[str, Any]]:
            response = operator.post(
                "/api/v1/sandboxes",
                json={
                    "image": "fleetgate/python:latest",
                    "policy": policy,
                    "command": ["python3", "-c", agent_script(body)],
                },
            )
            assert response.status_code == 201, response.text
            sandbox_id = response.json()["id"]
            with own_controller.http("admin") as admin:
                return SandboxAgent(own_controller, sandbox_id), pending_for(admin, sandbox_id)

        yield start


ASK = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}


def delivered_count(controller: Controller, action_id: int) -> int:
    with controller.http("admin") as admin:
        entries = admin.get("/api/v1/audit", params={"subject": f"action:{action_id}", "event": "action.delivered"})
    return len(entries.json()["items"])


def test_agent_resumes_after_the_controller_is_killed(own_controller: Controller, waiting_agent: Any) -> None:
    agent, item = waiting_agent(ASK)
    assert own_controller.proc is not None
    own_controller.proc.send_signal(signal.SIGKILL)
    own_controller.proc.wait(10)
    own_controller.proc = None
    time.sleep(3)  # the agent's long-poll broke; it keeps asking
    own_controller.start()
    assert agent.output() == []  # still waiting
    with own_controller.http("admin") as admin:
        assert decide(admin, item["id"], decision="approve").status_code == 200
    assert agent.wait_output() == [["got", {"v": 1}]]
    assert delivered_count(own_controller, item["action_id"]) == 1


def test_agent_resumes_after_the_worker_is_killed_and_deadlines_still_apply(
    own_controller: Controller, waiting_agent: Any
) -> None:
    worker_pid = int((own_controller.home / "run" / "worker.pid").read_text())
    agent, _ = waiting_agent({"default": "allow", "rules": [{"tool": "deploy", "decision": "ask", "timeout_s": 4}]})
    os.kill(worker_pid, signal.SIGKILL)
    # Nobody decides: the deadline passes while the worker is dead; the restarted worker applies the default.
    assert agent.wait_output() == [["denied", "no one decided in time"]]
    new_pid = int((own_controller.home / "run" / "worker.pid").read_text())
    assert new_pid != worker_pid
    wait_for(lambda: _group_gone(worker_pid), timeout=10, what="the killed worker's pool processes to be cleaned up")
    second, item2 = waiting_agent(ASK)
    with own_controller.http("admin") as admin:
        decide(admin, item2["id"], decision="approve")
    assert second.wait_output() == [["got", {"v": 1}]]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_agent_resumes_while_redis_is_down_and_after_it_is_back(
    own_controller: Controller, own_redis: RedisServer, waiting_agent: Any
) -> None:
    agent, item = waiting_agent(ASK)
    own_redis.kill()
    with own_controller.http("admin") as admin:
        started = time.monotonic()
        assert decide(admin, item["id"], decision="approve").status_code == 200
        assert agent.wait_output(timeout=30) == [["got", {"v": 1}]]
        # A decision made through the API wakes the gateway in the same process directly: no wait for a poll.
        assert time.monotonic() - started < 3
        own_redis.start()
        second, item2 = waiting_agent(ASK)
        decide(admin, item2["id"], decision="approve")
        assert second.wait_output() == [["got", {"v": 1}]]
    assert delivered_count(own_controller, item["action_id"]) == 1


def test_webhooks_for_approvals_made_while_redis_was_down_are_sent_once_it_is_back(
    own_controller: Controller, own_redis: RedisServer
) -> None:
    receiver = Receiver()
    later = (
        "time.sleep(8)\ntry:\n    say('got', sdk.gate('deploy', {'v': 1}))\nexcept sdk.Denied as e:\n    say('no')\n"
    )
    with own_controller.http("admin") as admin, own_controller.http("operator") as operator:
        admin.post("/api/v1/webhooks", json={"url": receiver.url}).raise_for_status()
        body = {"image": "fleetgate/python:latest", "policy": ASK, "command": ["python3", "-c", agent_script(later)]}
        created = operator.post("/api/v1/sandboxes", json=body)
        assert created.status_code == 201, created.text
        own_redis.kill()  # the agent asks while Redis is away: nothing can be queued for the webhooks
        item = pending_for(admin, created.json()["id"], timeout=60)
        assert decide(admin, item["id"], decision="approve").status_code == 200
        agent = SandboxAgent(own_controller, created.json()["id"])
        assert agent.wait_output() == [["got", {"v": 1}]]
        time.sleep(2)
        assert receiver.calls == []
        own_redis.start()

        def events() -> list[str]:
            sent = [json.loads(body) for _, body in receiver.calls]
            return sorted(p["event"] for p in sent if p["approval"]["id"] == item["id"])

        try:
            wait_for(lambda: len(events()) >= 2, timeout=60, what="both notifications once Redis is back")
            time.sleep(3)  # more sweeps run: nothing is sent twice
            assert events() == ["approval.decided", "approval.requested"]
        finally:
            receiver.server.shutdown()
    with sqlite3.connect(own_controller.home / "fleetgate.db") as db:  # planned is done: the outbox is empty
        assert db.execute("SELECT approval_id, event FROM notification").fetchall() == []


def test_killed_controller_leaves_no_orphan_worker(own_controller: Controller) -> None:
    worker_pid = int((own_controller.home / "run" / "worker.pid").read_text())
    assert own_controller.proc is not None
    own_controller.proc.send_signal(signal.SIGKILL)
    own_controller.proc.wait(10)
    own_controller.proc = None

    def gone() -> bool:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=30, what="the worker to exit with its controller")
    own_controller.start()
    own_controller.restart()
    httpx.get(f"{own_controller.url}/healthz").raise_for_status()
