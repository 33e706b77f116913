"""Commands over the runtime channel: a running sandbox's supervisor takes `exec` requests through the gateway.

`docker exec` costs 45 to 50 ms on runc and 65 to 100 ms on gVisor before the command even starts (the engine
spawns a runtime process per exec). The supervisor is already inside the sandbox and already talks to the
controller, so it keeps one long-poll open on the gateway (`GET .../exec/next`); a command handed to it starts in
a few milliseconds, and its result comes back on `POST .../exec/{id}/result`. `docker exec` stays the fallback
when no supervisor takes the command in time (one that is gone, or from before this channel).

The API (threads) hands a command over with `run`; the gateway (the event loop both servers share) serves the
long-polls with `next` and takes the results with `deliver`. What a supervisor answers is as trustworthy as the
sandbox it runs in, which is what `docker exec`'s answer is too: the command ran inside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.models import ExecResult

TAKE_S = 2.0  # how long a command waits for a supervisor to start it before `docker exec` runs it instead
ALIVE_EVERY_S = 1.0  # while a command runs, how often its sandbox is checked to be running still
EXPECT_S = 5.0  # how long a just-claimed pool sandbox's supervisor is waited for before it first polls
ANSWER_GRACE_S = 15.0  # past the command's own deadline, for the supervisor to kill it and answer


@dataclass
class _Job:
    """queued -> offered (a long-poll returned it) -> started (the supervisor said so) -> answered; a job that is
    not started within TAKE_S is withdrawn, and a supervisor that asks to start it then is told not to."""

    id: str
    sandbox_id: str
    request: dict[str, Any]
    state: str = "queued"
    started: threading.Event = field(default_factory=threading.Event)
    result: concurrent.futures.Future[dict[str, Any]] = field(default_factory=concurrent.futures.Future)


class ChannelLost(Exception):
    """A supervisor started a command and never answered (the gateway stopped, or the sandbox under it)."""


class ExecChannel:
    """The commands waiting for, and running in, each sandbox's supervisor. One per controller process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[_Job]] = {}
        self._jobs: dict[tuple[str, str], _Job] = {}
        # Sandboxes whose supervisor polls: their commands wait for it (up to TAKE_S). A supervisor not seen yet
        # (a cold sandbox still starting, whose docker exec is quicker than its Python) is not waited for, unless
        # its sandbox was just claimed from a pool: that supervisor is up and starts polling in milliseconds.
        self._seen: set[str] = set()
        self._expected: dict[str, float] = {}
        self._closed = False

    # --- the gateway's side (on the event loop) -----------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    async def next(self, sandbox_id: str, wait_s: float) -> dict[str, Any] | None:
        """A supervisor's long-poll: the next command for its sandbox, or None after `wait_s`."""
        self._seen.add(sandbox_id)
        self._expected.pop(sandbox_id, None)
        queue = self._queues.setdefault(sandbox_id, asyncio.Queue())
        deadline = time.monotonic() + wait_s
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(min(remaining, 1.0)):  # unlike 3.11's wait_for, never drops a job
                    job = await queue.get()
            except TimeoutError:
                continue
            if job.state != "queued":
                continue
            job.state = "offered"
            return {"id": job.id, **job.request}
        return None

    def start(self, sandbox_id: str, exec_id: str) -> bool:
        """The supervisor is about to run a command it was offered: False when it must not (withdrawn, unknown)."""
        job = self._jobs.get((sandbox_id, exec_id))
        if job is None or job.state != "offered":
            return False
        job.state = "started"
        job.started.set()
        return True

    def deliver(self, sandbox_id: str, exec_id: str, result: dict[str, Any]) -> bool:
        """A supervisor's answer to a command it started; False when no such command of this sandbox runs."""
        job = self._jobs.get((sandbox_id, exec_id))
        if job is None or job.state != "started" or job.result.done():
            return False
        self._jobs.pop((sandbox_id, exec_id), None)
        job.result.set_result(result)
        return True

    def close(self) -> None:
        """The gateway stops: end the long-polls, fail the commands still running (their callers get an error)."""
        self._closed = True
        for job in list(self._jobs.values()):
            if job.state == "started" and not job.result.done():
                job.result.set_exception(ChannelLost("the controller's gateway stopped while the command ran"))

    # --- the API's side (any thread but the loop's) -------------------------------------------------------

    def run(
        self, sandbox_id: str, request: dict[str, Any], timeout_s: float, alive: Callable[[], bool] = lambda: True
    ) -> dict[str, Any] | None:
        """Run `request` through the sandbox's supervisor and return its answer; None when no supervisor started
        it within TAKE_S (then nothing ran, and the caller uses `docker exec`). Raises ChannelLost when one
        started it and gave no answer: in time, or before `alive()` (asked every second) said the sandbox ended."""
        loop = self._loop
        if loop is None or self._closed or not loop.is_running() or not self._awaited(sandbox_id):
            return None
        job = _Job(secrets.token_hex(8), sandbox_id, request)
        self._jobs[(sandbox_id, job.id)] = job
        try:
            loop.call_soon_threadsafe(self._enqueue, job)
            if not job.started.wait(TAKE_S):
                state = asyncio.run_coroutine_threadsafe(self._withdraw(job), loop).result()
                if state != "started":
                    if state == "queued":  # no supervisor even asked: do not wait for one next time
                        self._seen.discard(sandbox_id)
                        self._expected.pop(sandbox_id, None)
                    return None
            deadline = time.monotonic() + timeout_s + ANSWER_GRACE_S
            while True:
                try:
                    return job.result.result(min(ALIVE_EVERY_S, max(deadline - time.monotonic(), 0.0)))
                except concurrent.futures.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise ChannelLost(
                            f"the sandbox's supervisor started the command and gave no answer in {timeout_s:g} s"
                        ) from None
                    if not alive():
                        raise ChannelLost("the sandbox ended while the command ran") from None
        finally:
            self._jobs.pop((sandbox_id, job.id), None)

    def expect(self, sandbox_id: str) -> None:
        """A supervisor already running is about to poll (a pool sandbox was claimed): wait for it."""
        self._expected[sandbox_id] = time.monotonic() + EXPECT_S

    def _awaited(self, sandbox_id: str) -> bool:
        return sandbox_id in self._seen or self._expected.get(sandbox_id, 0.0) > time.monotonic()

    def _enqueue(self, job: _Job) -> None:
        self._queues.setdefault(job.sandbox_id, asyncio.Queue()).put_nowait(job)

    async def _withdraw(self, job: _Job) -> str:
        """On the loop, so that no supervisor starts the job in between; the state it had."""
        state = job.state
        if state != "started":
            job.state = "withdrawn"
        return state

    def forget(self, sandbox_id: str) -> None:
        """The sandbox is gone: drop its queue (a supervisor that comes back makes a new one)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has stopped: nothing is left to drop
                self._loop.call_soon_threadsafe(self._queues.pop, sandbox_id, None)
        self._seen.discard(sandbox_id)
        self._expected.pop(sandbox_id, None)


def capped(result: ExecResult, limit: int) -> ExecResult:
    """A supervisor's answer held to the output limit here too: it comes from inside the sandbox."""
    out, err = result.stdout.encode(), result.stderr.encode()
    if len(out) + len(err) <= limit:
        return result
    out = out[:limit]
    err = err[: limit - len(out)]
    return result.model_copy(
        update={"stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"), "truncated": True}
    )
