"""The sandbox's first process: waits for its credentials, runs the sandbox's command, reports what it does.

Every stdout/stderr line of the command goes to the controller in batches (and to the container's own log),
then its exit status; a heartbeat goes out every few seconds while the sandbox lives. A pooled sandbox starts
with no credentials: the supervisor waits for the controller to write them on claim.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Dict, List, Optional

from agent_runtime import commands, egress
from agent_runtime.client import CREDENTIALS, Gateway, GatewayError, load_credentials

MAX_LINE = 16 * 1024
BATCH_LINES = 500
READ_CHUNK = 64 * 1024
MAX_PENDING = 1 << 20  # bytes of one unfinished line held before they are shipped as they are
BATCH_WAIT_S = 0.1  # at most ten requests a second per sandbox, however chatty the agent
_STOP = object()


def wait_for_credentials(path: str = CREDENTIALS, poll_s: float = 0.02) -> Dict[str, Any]:
    while True:
        creds = load_credentials(path)
        if creds is not None:
            return creds
        time.sleep(poll_s)


class OutputShipper:
    """Batches output lines and sends them to the gateway from one thread; bounded, so a stalled controller
    slows the agent's writes (back-pressure) instead of losing its output or eating the sandbox's memory."""

    def __init__(self, gateway: Gateway, capacity: int = 10000) -> None:
        self._gateway = gateway
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="fleetgate-output", daemon=True)
        self._thread.start()

    def put(self, stream: str, line: str) -> None:
        self.put_many(stream, [line])

    def put_many(self, stream: str, lines: List[str]) -> None:
        """Lines read together go in as one item: one hand-over between threads, not one per line."""
        now = time.time()
        self._queue.put([{"stream": stream, "line": line, "ts": now} for line in lines])

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        done = False
        while not done:
            batch: List[Dict[str, Any]] = []
            item = self._queue.get()
            deadline = time.monotonic() + BATCH_WAIT_S
            while True:
                if item is _STOP:
                    done = True
                    break
                batch.extend(item)
                if len(batch) >= BATCH_LINES:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._send(batch)

    def _send(self, batch: List[Dict[str, Any]]) -> None:
        try:
            self._gateway.call("POST", "/output", {"lines": batch}, retry_for=120.0)
        except GatewayError as e:
            sys.stderr.write("fleetgate: %d output lines not delivered: %s\n" % (len(batch), e))


def _pieces(raw: bytes) -> List[str]:
    """One output line as text, in pieces of at most MAX_LINE characters (an empty line is one empty piece)."""
    text = raw.decode("utf-8", errors="replace")
    return [text[start : start + MAX_LINE] for start in range(0, max(len(text), 1), MAX_LINE)]


def _pump(pipe: IO[bytes], stream: str, mirror: IO[bytes], shipper: OutputShipper) -> None:
    """Whatever the command wrote since the last read, in one read: mirrored to the container's log in one write
    and handed to the shipper in one item. Under gVisor every system call is costly, and an agent that prints a
    line at a time would otherwise cost several per line."""
    pending = b""
    while True:
        chunk = pipe.read1(READ_CHUNK)  # type: ignore[attr-defined]
        if not chunk:
            break
        mirror.write(chunk)
        mirror.flush()
        *complete, pending = (pending + chunk).split(b"\n")
        if len(pending) >= MAX_PENDING:  # a line with no end in sight: ship what there is
            complete.append(pending)
            pending = b""
        if complete:
            shipper.put_many(stream, [piece for raw in complete for piece in _pieces(raw)])
    if pending:
        shipper.put_many(stream, _pieces(pending))
    pipe.close()


def _heartbeats(gateway: Gateway, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            gateway.call("POST", "/heartbeat", retry_for=every_s)
        except GatewayError as e:
            sys.stderr.write("fleetgate: heartbeat failed: %s\n" % e)


def run_command(command: List[str], env: Dict[str, str], gateway: Gateway) -> int:
    shipper = OutputShipper(gateway)
    child_env = dict(os.environ)
    child_env.update(env)
    try:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env, start_new_session=True
        )
    except OSError as e:
        shipper.put("stderr", "fleetgate: cannot start %s: %s" % (command[0], e))
        shipper.close()
        return 127
    forward = lambda signum, _frame: _signal_group(child.pid, signum)  # noqa: E731
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    assert child.stdout is not None
    assert child.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(child.stdout, "stdout", sys.stdout.buffer, shipper), daemon=True),
        threading.Thread(target=_pump, args=(child.stderr, "stderr", sys.stderr.buffer, shipper), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    code = child.wait()
    for pump in pumps:
        pump.join(10)
    shipper.close()
    return code if code >= 0 else 128 - code


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def main(doors: Optional[List[egress.Relay]] = None) -> int:
    base_env = dict(os.environ)  # what a command sent by the controller starts from, as with docker exec
    creds = wait_for_credentials(os.environ.get("FLEETGATE_CREDENTIALS", CREDENTIALS))

    def connect() -> Gateway:
        return Gateway(creds["sandbox_id"], creds["token"], creds.get("socket", "/run/fleetgate/runtime.sock"))

    gateway = connect()
    stop = threading.Event()
    egress.serve(egress.bind() if doors is None else doors, creds, stop)  # before the command can want them
    # Commands first: a claimed pool sandbox's first `exec` is usually waiting for this poll already.
    threading.Thread(
        target=commands.serve, args=(connect, base_env, stop), name="fleetgate-commands", daemon=True
    ).start()
    command: Optional[List[str]] = creds.get("command")
    try:
        gateway.call("POST", "/hello", {"pid": os.getpid(), "python": sys.version.split()[0], "command": command})
    except GatewayError as e:
        sys.stderr.write("fleetgate: could not greet the controller: %s\n" % e)
    beat = threading.Thread(target=_heartbeats, args=(gateway, float(creds.get("heartbeat_s", 5)), stop), daemon=True)
    beat.start()
    if not command:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        return 0
    code = run_command(command, creds.get("env") or {}, gateway)
    stop.set()
    try:
        gateway.call("POST", "/exit", {"exit_code": code}, retry_for=60.0)
    except GatewayError as e:
        sys.stderr.write("fleetgate: exit status not delivered: %s\n" % e)
    return code
