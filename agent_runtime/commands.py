"""Commands the controller sends over the runtime channel (its `exec`), run by the supervisor.

The supervisor keeps one long-poll open on the gateway (`GET .../exec/next`). For each command it is offered it
asks to start it (`POST .../exec/ID/start`: the controller may have given up waiting and run it with `docker
exec` instead, and then says no), runs it as `docker exec` would (the sandbox's user, its environment plus the
command's, in the working directory, stdin empty), keeps at most `max_output` bytes of stdout and stderr
together, and at the deadline kills it and everything it started (its process group, then every process that
carries its marker: see reap.py). The answer goes back on `POST .../exec/ID/result`.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, List, Optional

from agent_runtime.client import Gateway, GatewayError
from agent_runtime.reap import MARKER_VARIABLE, reap

POLL_WAIT_S = 20
TIMED_OUT_EXIT = 124
READ_CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_S = 1.0  # a background child may hold the pipes open; its output is not waited for


class Capture:
    """stdout and stderr of one command, at most `limit` bytes together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False
        self._lock = threading.Lock()

    def add(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            room = self.limit - len(self.parts["stdout"]) - len(self.parts["stderr"])
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            self.parts[stream].extend(chunk)

    def text(self, stream: str) -> str:
        with self._lock:
            return bytes(self.parts[stream]).decode("utf-8", errors="replace")


STREAMS = ("stdout", "stderr")


def _read_when(pipes: "queue.Queue[Optional[subprocess.Popen[bytes]]]", stream: str, capture: Capture) -> None:
    child = pipes.get()
    if child is not None:
        _read(child.stdout if stream == "stdout" else child.stderr, stream, capture)  # type: ignore[arg-type]


def _read(pipe: IO[bytes], stream: str, capture: Capture) -> None:
    try:
        for chunk in iter(lambda: pipe.read1(READ_CHUNK), b""):  # type: ignore[attr-defined]
            capture.add(stream, chunk)
    except (OSError, ValueError):  # closed under us once the command is done
        pass


def execute(job: Dict[str, Any], base_env: Dict[str, str]) -> Dict[str, Any]:
    """Run one command to its end or its deadline; the answer the controller expects."""
    started = time.monotonic()
    command: List[str] = list(job["command"])
    timeout_s = float(job["timeout_s"])
    capture = Capture(int(job["max_output"]))
    env = dict(base_env)
    env.update(job.get("env") or {})
    env[MARKER_VARIABLE] = str(job["id"])
    workdir = job.get("workdir") or "/workspace"

    def answer(code: int, timed_out: bool = False) -> Dict[str, Any]:
        return {
            "exit_code": code,
            "stdout": capture.text("stdout"),
            "stderr": capture.text("stderr"),
            "timed_out": timed_out,
            "truncated": capture.truncated,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
        }

    if not os.path.isdir(workdir):
        capture.add("stderr", ("fleetgate: the working directory %s does not exist\n" % workdir).encode())
        return answer(126)
    # The readers start before the command does: a command that forks until the sandbox is out of pids (a fork
    # bomb) must not leave its own output unwatched, nor make the supervisor fail to report it.
    pipes: "queue.Queue[Optional[subprocess.Popen[bytes]]]" = queue.Queue()
    readers = [threading.Thread(target=_read_when, args=(pipes, stream, capture), daemon=True) for stream in STREAMS]
    try:
        for reader in readers:
            reader.start()
    except RuntimeError:  # the sandbox has no thread to give: the caller reports that the command could not run
        for _ in readers:
            pipes.put(None)
        raise
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=workdir,
            start_new_session=True,  # its own process group, killed whole at the deadline
        )
    except OSError as e:
        for _ in readers:
            pipes.put(None)
        capture.add("stderr", ("fleetgate: cannot run %s: %s\n" % (command[0], e.strerror or e)).encode())
        return answer(127 if isinstance(e, FileNotFoundError) else 126)
    for _ in readers:
        pipes.put(child)
    timed_out = False
    try:
        code = child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap(str(job["id"]))  # whatever left the group but kept the marker, and what is below it
        child.wait()
        code = TIMED_OUT_EXIT
    for reader in readers:
        reader.join(DRAIN_AFTER_EXIT_S)
    if code < 0:
        code = 128 - code  # killed by a signal: the shell's convention, as docker exec reports it
    return answer(code, timed_out)


def failed(reason: str) -> Dict[str, Any]:
    """The answer for a command that could not be run at all."""
    answer: Dict[str, Any] = {"exit_code": 126, "stdout": "", "stderr": reason, "duration_ms": 0.0}
    return {**answer, "timed_out": False, "truncated": False}


def _run_job(connect: Callable[[], Gateway], job: Dict[str, Any], base_env: Dict[str, str]) -> None:
    gateway = connect()
    try:
        try:
            gateway.call("POST", "/exec/%s/start" % job["id"], retry_for=5.0)
        except GatewayError:
            return  # withdrawn (the controller ran it another way) or unreachable: not ours to run
        try:
            result = execute(job, base_env)
        except Exception as e:  # whatever it was, the controller gets an answer, not silence
            result = failed("fleetgate: could not run the command: %s\n" % e)
        try:
            gateway.call("POST", "/exec/%s/result" % job["id"], result, retry_for=30.0)
        except GatewayError as e:
            sys.stderr.write("fleetgate: the result of a command was not delivered: %s\n" % e)
    finally:
        gateway.close()


def serve(connect: Callable[[], Gateway], base_env: Dict[str, str], stop: threading.Event) -> None:
    """The long-poll loop: each command offered runs on a thread of its own, so several can run at once."""
    poll = connect()
    while not stop.is_set():
        try:
            job = poll.call("GET", "/exec/next?wait_s=%d" % POLL_WAIT_S, retry_for=5.0)
        except GatewayError as e:
            if e.status in (401, 403, 404):
                return  # this sandbox's token is no longer good (removed), or a controller without the channel
            stop.wait(1.0)
            continue
        if job:
            worker = threading.Thread(target=_run_job, args=(connect, job, base_env), name="fleetgate-exec")
            worker.daemon = True
            try:
                worker.start()
            except RuntimeError:  # no thread to be had (the sandbox is out of pids): docker exec will run it
                stop.wait(0.5)
