"""Agents for the oversight tests: real scripts using the SDK, run inside real sandboxes, waiting on real people."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import Controller, wait_for


@dataclass
class AgentRun:
    """A script running in a sandbox through `exec`, in a thread, so the test can act while the agent waits."""

    client: httpx.Client
    sandbox_id: str
    script: str
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    _thread: threading.Thread = field(init=False)

    def start(self) -> AgentRun:
        def go() -> None:
            try:
                response = self.client.post(
                    f"/api/v1/sandboxes/{self.sandbox_id}/exec",
                    json={"command": ["python3", "-c", self.script], "timeout_s": 300},
                    timeout=320,
                )
                self.result = response.json()
            except BaseException as e:  # handed to the test thread in finish()
                self.error = e

        self._thread = threading.Thread(target=go, daemon=True)
        self._thread.start()
        return self

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the agent did not finish in time"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def lines(self, timeout: float = 60) -> list[str]:
        result = self.finish(timeout)
        assert result["exit_code"] == 0, result
        return [line for line in result["stdout"].splitlines() if line]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def agent_script(body: str) -> str:
    """A Python agent: `body` runs with sdk, json and a `say` that prints one JSON line per call."""
    return (
        "import json, sys, time\n"
        "from agent_runtime import sdk\n"
        "def say(*parts):\n    print(json.dumps(parts), flush=True)\n" + body
    )


@pytest.fixture
def run_agent(admin: httpx.Client) -> Iterator[Callable[[str, str], AgentRun]]:
    runs: list[AgentRun] = []

    def start(sandbox_id: str, body: str) -> AgentRun:
        run = AgentRun(httpx.Client(base_url=str(admin.base_url), headers=dict(admin.headers)), sandbox_id,
                       agent_script(body)).start()  # fmt: skip
        runs.append(run)
        return run

    yield start
    for run in runs:
        run._thread.join(0)


@pytest.fixture
def operator(controller: Controller) -> Iterator[httpx.Client]:
    """Sandboxes in these tests are started by an operator, so admins and approvers may approve their actions."""
    with controller.http("operator") as client:
        yield client


@pytest.fixture
def governed(operator: httpx.Client) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create a sandbox (as the operator) with an inline policy; removed after the test."""
    made: list[str] = []

    def create(policy: Any, **body: Any) -> dict[str, Any]:
        response = operator.post(
            "/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": policy, **body}
        )
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
        return dict(response.json())

    yield create
    for sandbox_id in made:
        operator.delete(f"/api/v1/sandboxes/{sandbox_id}")


def pending_for(client: httpx.Client, sandbox_id: str, timeout: float = 30, kind: str | None = None) -> dict[str, Any]:
    """The sandbox's newest pending queue item, once it appears."""

    def find() -> dict[str, Any] | None:
        params = {"sandbox": sandbox_id, **({"kind": kind} if kind else {})}
        response = client.get("/api/v1/approvals", params=params)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        return items[0] if items else None

    found: dict[str, Any] = wait_for(find, timeout=timeout, what=f"a pending item from {sandbox_id}")
    return found


def decide(client: httpx.Client, approval_id: int, **body: Any) -> httpx.Response:
    return client.post(f"/api/v1/approvals/{approval_id}/decision", json=body)


def parsed(lines: list[str]) -> list[list[Any]]:
    return [json.loads(line) for line in lines]


def now() -> float:
    return time.time()
