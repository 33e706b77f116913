"""Exec over the runtime channel in real sandboxes: the supervisor runs the command, docker exec is the fallback."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import wait_for

PARENT = ["sh", "-c", "echo parent $PPID: $(tr '\\0' ' ' < /proc/$PPID/cmdline 2>/dev/null)"]  # 0 under docker exec
SUPERVISOR_PID = (
    "import os\n"
    "for pid in os.listdir('/proc'):\n"
    "    if pid.isdigit():\n"
    "        try: line = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
    "        except OSError: continue\n"
    "        if line.startswith(b'python3\\0-m\\0agent_runtime\\0supervise'): print(pid)\n"
)


def run(admin: httpx.Client, sandbox_id: str, *command: str, **extra: Any) -> dict[str, Any]:
    response = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": list(command), **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def through_supervisor(admin: httpx.Client, sandbox_id: str) -> bool:
    return "agent_runtime supervise" in run(admin, sandbox_id, *PARENT)["stdout"]


def test_a_command_is_run_by_the_sandboxs_supervisor(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(env={"FROM_SANDBOX": "yes"})
    # A cold sandbox's first commands may go by docker exec while its supervisor starts; then it takes them.
    wait_for(lambda: through_supervisor(admin, sandbox["id"]), timeout=20, what="the supervisor to run a command")
    result = run(admin, sandbox["id"], "sh", "-c", 'echo "$FROM_SANDBOX $EXTRA $(id -u) $(pwd)"; exit 4',
                 env={"EXTRA": "given"})  # fmt: skip
    assert result["stdout"] == "yes given 10001 /workspace\n"
    assert result["exit_code"] == 4
    missing = run(admin, sandbox["id"], "no-such-program")
    assert missing["exit_code"] == 127
    assert "no-such-program" in missing["stderr"]


def test_a_frozen_supervisor_falls_back_to_docker_exec_and_is_used_again_when_it_thaws(
    admin: httpx.Client, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory(command=["sh", "-c", "sleep 600"])
    supervisor = run(admin, sandbox["id"], "python3", "-c", SUPERVISOR_PID)["stdout"].split()
    assert len(supervisor) == 1, supervisor
    run(admin, sandbox["id"], "sh", "-c", f"(sleep 1; kill -STOP {supervisor[0]}) >/dev/null 2>&1 &")
    time.sleep(2)
    started = time.monotonic()
    fallback = run(admin, sandbox["id"], *PARENT)
    assert "agent_runtime supervise" not in fallback["stdout"]  # docker exec ran it
    assert fallback["exit_code"] == 0
    assert time.monotonic() - started < 10
    # The deadline holds on the fallback path too: the command and its children are killed.
    timed = run(admin, sandbox["id"], "sh", "-c", "sleep 300 & sleep 301", timeout_s=1)
    assert timed["timed_out"] is True
    left = run(admin, sandbox["id"], "sh", "-c", "ps -eo args | grep -c '[s]leep 30' || true")
    assert left["stdout"].strip() == "0"
    run(admin, sandbox["id"], "kill", "-CONT", supervisor[0])
    wait_for(lambda: through_supervisor(admin, sandbox["id"]), timeout=30, what="the thawed supervisor to run it")
