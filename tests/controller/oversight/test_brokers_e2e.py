"""End to end: brokered actions reach the world only after a person approves. An agent in a real sandbox asks
with `sdk.act`; the worker sends the email to a real SMTP server and pushes to a real `git daemon`, both on this
machine, and nothing arrives while the approval is pending or after a denial."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller as SmtpController
from aiosmtpd.handlers import Message

from tests.conftest import Controller, free_port, make_controller, running, wait_for
from tests.controller.oversight.conftest import AgentRun, decide, parsed, pending_for

ASK_BROKERED = {
    "default": "allow",
    "rules": [{"tool": "email.send", "decision": "ask"}, {"tool": "git.push", "decision": "ask"}],
}


class Inbox(Message):
    """Keeps every message the SMTP server receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def handle_message(self, message: Any) -> None:
        self.messages.append(message)


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    smtp = SmtpController(handler, hostname="127.0.0.1", port=port)
    smtp.start()
    yield handler, port
    smtp.stop()


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A bare repository served by `git daemon` with pushes enabled, on a free port of 127.0.0.1."""
    base = tmp_path_factory.mktemp("forge")
    subprocess.run(["git", "init", "--quiet", "--bare", str(base / "app.git")], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}",
         "--export-all", "--enable=receive-pack", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _accepts(port), timeout=10, what="git daemon to listen")
        yield base / "app.git", port
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def controller(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    redis_url: str,
    python_image: str,
    inbox: tuple[Inbox, int],
) -> Iterator[Controller]:
    """This module's controller (the fixtures of oversight/conftest.py use it): its worker sends email through
    the test's SMTP server."""
    ctl = make_controller(
        tmp_path_factory.mktemp("brokers"),
        redis_url,
        FLEETGATE_SMTP_URL=f"smtp://127.0.0.1:{inbox[1]}",
        FLEETGATE_POOL_SIZE="0",
    )
    with running(ctl, docker_client):
        yield ctl


@pytest.fixture
def agent(admin: httpx.Client) -> Iterator[Callable[[str, str], AgentRun]]:
    """Run an agent script in a sandbox, its working folder the workspace."""
    runs: list[AgentRun] = []

    def start(sandbox_id: str, body: str) -> AgentRun:
        client = httpx.Client(base_url=str(admin.base_url), headers=dict(admin.headers))
        script = (
            "import json, os, subprocess\nfrom agent_runtime import sdk\nos.chdir('/workspace')\n"
            "def say(*parts):\n    print(json.dumps(parts), flush=True)\n" + body
        )
        runs.append(AgentRun(client, sandbox_id, script).start())
        return runs[-1]

    yield start
    for run in runs:
        run.client.close()


SEND = (
    "try:\n"
    "    say('sent', sdk.act('email.send', {'to': 'team@example.com', 'subject': SUBJECT, 'body': 'hello'}))\n"
    "except sdk.Denied as e:\n"
    "    say('denied', e.message)\n"
)


def test_an_email_is_sent_only_after_approval(
    governed: Callable[..., dict[str, Any]],
    agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    inbox: tuple[Inbox, int],
) -> None:
    messages = inbox[0].messages
    sandbox = governed(ASK_BROKERED)
    run = agent(sandbox["id"], "SUBJECT = 'approved mail'\n" + SEND)
    item = pending_for(admin, sandbox["id"])
    assert item["action"]["tool"] == "email.send"
    time.sleep(1.5)  # the worker is idle and the agent waits: nothing may go out yet
    assert run.running
    assert not any(m["Subject"] == "approved mail" for m in messages)
    approved = decide(admin, item["id"], decision="approve")
    assert approved.status_code == 200, approved.text
    [[word, result]] = parsed(run.lines())
    assert (word, result["via"], result["to"]) == ("sent", "smtp", "team@example.com")
    [mail] = [m for m in messages if m["Subject"] == "approved mail"]
    assert mail["To"] == "team@example.com"
    assert mail.get_payload().strip() == "hello"


def test_a_denied_email_is_never_sent(
    governed: Callable[..., dict[str, Any]],
    agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    inbox: tuple[Inbox, int],
) -> None:
    sandbox = governed(ASK_BROKERED)
    run = agent(sandbox["id"], "SUBJECT = 'denied mail'\n" + SEND)
    item = pending_for(admin, sandbox["id"])
    decide(admin, item["id"], decision="deny", message="not to the whole team")
    assert parsed(run.lines()) == [["denied", "not to the whole team"]]
    time.sleep(1.5)
    assert not any(m["Subject"] == "denied mail" for m in inbox[0].messages)
    action = admin.get(f"/api/v1/actions/{item['action_id']}").json()
    assert action["broker_status"] is None


PUSH = """
env = dict(os.environ, GIT_AUTHOR_NAME='agent', GIT_AUTHOR_EMAIL='agent@example.com', GIT_COMMITTER_NAME='agent',
           GIT_COMMITTER_EMAIL='agent@example.com', HOME='/tmp')
def git(*args):
    return subprocess.run(['git', *args], env=env, check=True, capture_output=True, text=True).stdout.strip()
git('init', '-q', '-b', 'main')
git('config', 'core.hooksPath', '/workspace/hooks')  # the controller must never run these
os.makedirs('hooks', exist_ok=True)
for hook in ('pre-push', 'reference-transaction', 'post-update'):
    with open('hooks/' + hook, 'w') as f:
        f.write('#!/bin/sh\\ntouch /tmp/hook-ran\\n')
    os.chmod('hooks/' + hook, 0o755)
with open('app.py', 'w') as f:
    f.write('print(42)\\n')
git('add', 'app.py')
git('commit', '-q', '-m', 'the agent wrote app.py')
say('head', git('rev-parse', 'HEAD'))
try:
    say('pushed', sdk.act('git.push', {'remote': 'forge', 'branch': 'main'}, risk='high'))
except sdk.Denied as e:
    say('denied', e.message)
"""


def test_a_push_reaches_the_remote_only_after_approval(
    governed: Callable[..., dict[str, Any]],
    agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    forge: tuple[Path, int],
) -> None:
    bare, port = forge
    added = admin.post(
        "/api/v1/services", json={"name": "forge", "kind": "git", "upstream": f"git://127.0.0.1:{port}/app.git"}
    )
    assert added.status_code == 201, added.text
    sandbox = governed(ASK_BROKERED)
    run = agent(sandbox["id"], PUSH)
    item = pending_for(admin, sandbox["id"])
    assert item["action"]["args"] == {"remote": "forge", "branch": "main"}
    time.sleep(1.5)
    assert _branch(bare) is None  # nothing pushed while a person has not decided
    approved = decide(admin, item["id"], decision="approve")
    assert approved.status_code == 200, approved.text
    (_, head), (word, result) = parsed(run.lines(timeout=90))
    assert (word, result) == ("pushed", {"pushed": True, "remote": "forge", "branch": "main", "commit": head})
    assert _branch(bare) == head
    log = subprocess.run(["git", "--git-dir", str(bare), "log", "--format=%s", "main"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert log.strip() == "the agent wrote app.py"
    assert not Path("/tmp/hook-ran").exists()  # the workspace's hooks ran neither here nor anywhere on the host


def _branch(bare: Path) -> str | None:
    found = subprocess.run(["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", "refs/heads/main"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return found.stdout.strip() or None
