"""Running one command in a sandbox: docker exec with a deadline and a cap on how much output is kept."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.models import ExecResult

TIMED_OUT_EXIT = 124


@dataclass
class _Capture:
    limit: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, out: bytes | None, err: bytes | None) -> None:
        for chunk, sink in ((out, self.stdout), (err, self.stderr)):
            if not chunk:
                continue
            room = self.limit - len(self.stdout) - len(self.stderr)
            if room <= 0:
                self.truncated = True
                continue
            sink.extend(chunk[:room])
            self.truncated |= len(chunk) > room


def run_exec(
    client: Any,
    container_id: str,
    command: list[str],
    *,
    env: dict[str, str],
    workdir: str,
    timeout_s: float,
    max_output: int,
    can_kill_on_host: bool,
) -> ExecResult:
    """Run `command` to completion or to its deadline; on the deadline kill it and everything it started."""
    api = client.api
    started = time.perf_counter()
    exec_id = api.exec_create(container_id, command, environment=env, workdir=workdir)["Id"]
    capture = _Capture(max_output)
    done = threading.Event()

    def pump() -> None:
        try:
            for out, err in api.exec_start(exec_id, stream=True, demux=True):
                capture.add(out, err)
        finally:
            done.set()

    reader = threading.Thread(target=pump, name=f"exec-{exec_id[:8]}", daemon=True)
    reader.start()
    timed_out = not done.wait(timeout_s)
    if timed_out:
        _kill(api, exec_id, can_kill_on_host)
        done.wait(10)
    info = api.exec_inspect(exec_id)
    exit_code = info.get("ExitCode")
    return ExecResult(
        exit_code=TIMED_OUT_EXIT if timed_out else (exit_code if exit_code is not None else -1),
        stdout=capture.stdout.decode(errors="replace"),
        stderr=capture.stderr.decode(errors="replace"),
        timed_out=timed_out,
        truncated=capture.truncated,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _kill(api: Any, exec_id: str, can_kill_on_host: bool) -> None:
    pid = int(api.exec_inspect(exec_id).get("Pid") or 0)
    if pid <= 0 or not can_kill_on_host:
        return
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (the exec's host pid is known; its children are not)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            queue.extend(children)
    return found
