"""The supervisor's side of exec over the runtime channel, on this machine: what a command's answer holds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from agent_runtime.commands import execute
from agent_runtime.reap import victims

BASE = {"PATH": os.environ["PATH"]}


def job(*command: str, **extra: Any) -> dict[str, Any]:
    found = {"id": os.urandom(8).hex(), "command": list(command), "env": {}, "workdir": "/tmp", "timeout_s": 10}
    return {**found, "max_output": 1 << 20, **extra}


def test_output_exit_code_environment_and_working_directory(tmp_path: Path) -> None:
    script = 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'
    answer = execute(job("sh", "-c", script, env={"GREETING": "hi"}, workdir=str(tmp_path)), BASE)
    assert answer["stdout"] == f"hi from {tmp_path}\n"
    assert answer["stderr"] == "oops\n"
    assert answer["exit_code"] == 3
    assert answer["timed_out"] is False
    assert answer["duration_ms"] > 0


def test_the_base_environment_is_passed_and_stdin_is_empty() -> None:
    answer = execute(job("sh", "-c", 'echo "$FROM_BASE"; cat'), {"PATH": os.environ["PATH"], "FROM_BASE": "base"})
    assert answer["stdout"] == "base\n"


def test_a_missing_program_or_folder_is_an_exit_code_with_a_reason() -> None:
    env = BASE
    missing = execute(job("no-such-program-here"), env)
    assert missing["exit_code"] == 127
    assert "cannot run no-such-program-here" in missing["stderr"]
    nowhere = execute(job("true", workdir="/no/such/folder"), env)
    assert nowhere["exit_code"] == 126
    assert "/no/such/folder does not exist" in nowhere["stderr"]


def test_killed_by_a_signal_is_128_plus_the_signal() -> None:
    assert execute(job("sh", "-c", "kill -9 $$"), BASE)["exit_code"] == 137


def test_the_deadline_kills_the_whole_tree_including_a_process_that_left_the_group() -> None:
    request = job("sh", "-c", "sleep 300 & setsid sleep 301 & sleep 302; echo never", timeout_s=1)
    started = time.monotonic()
    answer = execute(request, BASE)
    assert answer["timed_out"] is True
    assert answer["exit_code"] == 124
    assert "never" not in answer["stdout"]
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    assert victims(request["id"]) == []


def test_output_past_the_limit_is_cut_and_said() -> None:
    answer = execute(job("sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; echo done >&2", max_output=1000), BASE)
    assert len(answer["stdout"]) + len(answer["stderr"]) == 1000
    assert answer["truncated"] is True
    assert answer["exit_code"] == 0


def test_a_background_child_holding_the_pipes_does_not_hold_the_answer() -> None:
    started = time.monotonic()
    answer = execute(job("sh", "-c", "sleep 30 & echo $!"), BASE)
    assert answer["exit_code"] == 0
    assert time.monotonic() - started < 5
    os.kill(int(answer["stdout"]), signal.SIGKILL)  # the test's own leftover, by its pid


def test_a_command_that_takes_every_thread_is_still_watched_and_answered(monkeypatch: Any) -> None:
    """A fork bomb leaves the sandbox no pids: the output readers must exist before the command can fork."""
    import subprocess
    import threading

    real_popen, real_start = subprocess.Popen, threading.Thread.start

    def popen_then_no_threads(*args: Any, **kwargs: Any) -> Any:
        child = real_popen(*args, **kwargs)

        def no_thread(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(threading.Thread, "start", no_thread)
        return child

    monkeypatch.setattr(subprocess, "Popen", popen_then_no_threads)
    try:
        answer = execute(job("sh", "-c", "echo still here; exit 4"), BASE)
    finally:
        monkeypatch.setattr(threading.Thread, "start", real_start)
    assert answer["exit_code"] == 4
    assert answer["stdout"] == "still here\n"
