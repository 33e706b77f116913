"""Brokered actions through the outbox flow: the context it builds (secrets, services, the sandbox's workspace),
what it keeps on the action and in the audit log, and what never gets there (a secret)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret
from controller.models import Event, Role, Sandbox, SandboxCreate, ServiceCreate, ServiceKind
from controller.names import Task
from controller.oversight.models import Action, AuditEntry
from controller.oversight.policy import Risk
from tests.controller.flows.conftest import Fast

SECRET = "ghp_not-for-the-agent-0042"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "a",
           "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@example.com"}  # fmt: skip


def autonomous(fast: Fast) -> tuple[Sandbox, str]:
    sandbox = fast.fleet.sandboxes.create(SandboxCreate(policy="autonomous"), owner=fast.user("olivia", Role.operator))
    secret = new_secret(SANDBOX_TOKEN_PREFIX)
    with fast.fleet.tx.write() as t:
        row = t.session.get(Sandbox, sandbox.id)
        assert row is not None
        row.token_hash = hash_token(secret)
    return sandbox, secret


def act(fast: Fast, tool: str, args: dict[str, Any]) -> Action:
    """An agent's sdk.act, allowed by policy, then the worker's broker task."""
    sandbox, secret = autonomous(fast)
    reply = fast.fleet.runtime.propose(
        secret=secret, sandbox_id=sandbox.id, tool=tool, args=args, risk=Risk.low, brokered=True
    )
    assert reply["status"] == "allowed"
    assert (reply["action_id"],) in fast.tasks.of(Task.RUN_BROKER)
    fast.fleet.outbox.run_broker(reply["action_id"])
    action: Action = fast.row(Action, reply["action_id"])
    return action


def everything_stored(fast: Fast) -> str:
    with Session(fast.fleet.db) as session:
        rows = [r.model_dump(mode="json") for r in session.exec(select(AuditEntry))]
        rows += [r.model_dump(mode="json") for r in session.exec(select(Event))]
        rows += [r.model_dump(mode="json") for r in session.exec(select(Action))]
    return json.dumps(rows)


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_an_http_request_uses_a_stored_secret_that_no_row_keeps(fast: Fast, echo_port: int) -> None:
    fast.fleet.admin.set_secret("forge-token", SECRET, actor="alice")
    fast.fleet.outbox.settings = fast.settings.model_copy(update={"egress_allow": f"127.0.0.1:{echo_port}"})
    args = {"method": "GET", "url": f"http://127.0.0.1:{echo_port}/", "headers": {"X-Token": "{{secret:forge-token}}"}}
    action = act(fast, "http.request", args)
    assert action.broker_status == "done", action.result
    assert action.args == args  # the placeholder, as the agent asked and the approver saw
    assert action.result is not None
    assert json.loads(action.result["body"])["X-Token"] == "{{secret:forge-token}}"
    assert SECRET not in everything_stored(fast)
    done = fast.audit(f"action:{action.id}")[-1]
    assert (done.event, done.data["result"]["status"]) == ("broker.done", 200)
    assert "body" not in done.data["result"]  # the audit log keeps the size, the action row the body


def test_a_broker_failure_is_the_agents_result_and_audited(fast: Fast) -> None:
    action = act(fast, "http.request", {"method": "GET", "url": "http://127.0.0.1:9/", "headers": {}})
    assert action.broker_status == "failed"
    assert action.result is not None
    assert "loopback" in action.result["error"]
    assert fast.audit(f"action:{action.id}")[-1].event == "broker.failed"


def test_a_git_push_reads_the_sandboxs_workspace_folder(fast: Fast, tmp_path: Path) -> None:
    workspace, origin = tmp_path / "workspace", tmp_path / "origin.git"
    workspace.mkdir()

    def git(*argv: str, cwd: Path = workspace) -> str:
        env = {**os.environ, **GIT_ENV}
        done = subprocess.run(["git", *argv], check=False, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    git("init", "-q", "-b", "main")
    (workspace / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    fast.fleet.admin.add_service(
        ServiceCreate(name="origin", kind=ServiceKind.git, upstream=f"file://{origin}"), actor="alice"
    )
    real_create = fast.engine.create_volume

    def here(name: str, labels: Any, driver_opts: Any = None) -> str | None:
        """The workspace volume binds the test's folder (as a size-limited workspace binds its mount)."""
        found = real_create(name, labels, driver_opts)
        fast.engine.volumes_[name] = dataclasses.replace(fast.engine.volumes_[name], folder=str(workspace))
        return found

    fast.engine.create_volume = here  # type: ignore[method-assign]
    action = act(fast, "git.push", {"remote": "origin", "branch": "main"})
    assert action.broker_status == "done", action.result
    assert action.result == {"pushed": True, "remote": "origin", "branch": "main", "commit": git("rev-parse", "HEAD")}
    assert git("--git-dir", str(origin), "rev-parse", "main", cwd=tmp_path) == action.result["commit"]


def test_a_git_push_without_a_workspace_here_fails_clearly(fast: Fast, tmp_path: Path) -> None:
    fast.fleet.admin.add_service(
        ServiceCreate(name="origin", kind=ServiceKind.git, upstream=f"file://{tmp_path}/o.git"), actor="alice"
    )
    fast.engine.create_volume = lambda name, labels, driver_opts=None: None  # type: ignore[method-assign]
    action = act(fast, "git.push", {"remote": "origin", "branch": "main"})
    assert action.broker_status == "failed"
    assert action.result is not None
    assert "not on the controller's machine" in action.result["error"]
