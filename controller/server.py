"""`fleetgate up`: the API on TCP, the runtime gateway on its unix socket, and a Celery worker with beat.

One process serves both ASGI apps on one event loop; the worker is a child process that goes down with it.
`--detach` starts the same thing in the background with a pid file and a log file in the home.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import uvicorn
import uvloop

from controller.config import Settings, instance_id
from controller.db import Checkpointer, migrate
from controller.errors import FleetgateError, Unavailable
from controller.fleet import Fleet, event_bus
from controller.names import task_queue

log = logging.getLogger("fleetgate")
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, which runs two of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "fleetgate.pid"


def running_pid(settings: Settings) -> int | None:
    """The pid of this home's running controller, or None (a stale pid file is removed)."""
    path = pid_file(settings)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError):
        return None
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None


def compile_runtime() -> None:
    """Byte-compile the runtime package that sandboxes mount read-only: a sandbox whose Python matches then loads
    it without compiling it at every start (about 20 ms of a supervisor's start under gVisor). Best effort."""
    import agent_runtime

    with contextlib.suppress(OSError):
        compileall.compile_dir(Path(agent_runtime.__file__).resolve().parent, quiet=1)


def preflight(fleet: Fleet) -> None:
    """Fail early and clearly when Redis or the local Docker engine is not answering."""
    fleet.ping_redis()
    fleet.hosts.local.ping()


def gateway_socket(path: Path) -> socket.socket:
    """Bind the runtime socket; sandboxes run as another user, so anyone who can reach the folder may connect."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    path.chmod(0o666)
    sock.listen(512)
    return sock


def start_worker(settings: Settings, *, concurrency: int = 2) -> subprocess.Popen[bytes]:
    log_file = open(settings.log_dir / "worker.log", "ab")  # noqa: SIM115 (the child owns it)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "controller.worker.celery_app",
        "worker",
        "-B",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "-Q",
        task_queue(instance_id(settings)),
        "--hostname",
        f"fleetgate-{settings.port}@%h",
        "--schedule",
        str(settings.run_dir / "celerybeat-schedule"),
    ]
    return subprocess.Popen(
        argv,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=_child_env(settings),
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call on a preloaded libc; no locks taken)
        start_new_session=True,  # its own process group: stopping it stops its pool processes and beat too
    )


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the controller dies, even by SIGKILL (no orphan workers)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerSupervisor:
    """Keeps the Celery worker running: a worker that dies (a crash, an OOM kill) is started again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.process = start_worker(self.settings)
        (self.settings.run_dir / "worker.pid").write_text(f"{self.process.pid}\n")

    async def watch(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(1.0)
            if self.process is not None and self.process.poll() is not None:
                log.warning("the Celery worker exited (code %s); starting it again", self.process.returncode)
                _signal_group(self.process.pid, signal.SIGKILL)  # its orphaned pool processes, if it was killed
                await asyncio.sleep(delay)
                self.start()
                self.restarts += 1
                delay = min(delay * 2, 30.0)

    def stop(self) -> None:
        if self.process is not None:
            _stop_child(self.process)
        (self.settings.run_dir / "worker.pid").unlink(missing_ok=True)


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLEETGATE_HOME=str(settings.home),
        FLEETGATE_BIND=settings.bind,
        FLEETGATE_REDIS_URL=settings.redis_url,
        FLEETGATE_DATABASE_URL=settings.db_url,
        FLEETGATE_DOCKER_URL=settings.docker_url,
    )
    return env


def serve(settings: Settings, *, with_worker: bool = True) -> None:
    """Run the controller in the foreground until SIGTERM or SIGINT."""
    from controller.gateway.app import create_gateway
    from controller.gateway.door import door_for
    from controller.main import create_app

    settings.ensure_dirs()
    migrate(settings)
    compile_runtime()
    bus = event_bus(settings)
    fleet = Fleet(settings, events=bus)
    preflight(fleet)
    sock = gateway_socket(settings.gateway_socket)
    app = create_app(fleet)
    # Event streams and long-polls never finish by themselves: on shutdown they get a few seconds, then are closed
    # (clients come back with Last-Event-ID, agents ask again).
    common: dict[str, Any] = {"http": "httptools", "log_level": "warning", "timeout_graceful_shutdown": 3}
    api = _Server(uvicorn.Config(app, host=settings.host, port=settings.port, **common))
    runtime_app = create_gateway(fleet, bus)
    door = door_for(runtime_app.state.egress.handle)  # the runtime's HTTP and the egress door share the socket
    gateway = _Server(uvicorn.Config(runtime_app, **{**common, "http": door}))
    worker = WorkerSupervisor(settings) if with_worker else None
    if worker is not None:
        worker.start()
    checkpoints = Checkpointer(fleet.db)
    checkpoints.start()
    pid_file(settings).write_text(f"{os.getpid()}\n")
    try:
        uvloop.run(_serve_both(api, gateway, sock, worker))
    finally:
        checkpoints.stop()
        pid_file(settings).unlink(missing_ok=True)
        if worker is not None:
            worker.stop()
        settings.gateway_socket.unlink(missing_ok=True)


async def _serve_both(api: _Server, gateway: _Server, sock: socket.socket, worker: WorkerSupervisor | None) -> None:
    anyio.to_thread.current_default_thread_limiter().total_tokens = 200
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if not api.should_exit:
            _shutdown_watchdog(worker)
        api.should_exit = True
        gateway.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    watcher = loop.create_task(worker.watch()) if worker is not None else None
    results = await asyncio.gather(api.serve(), gateway.serve(sockets=[sock]), return_exceptions=True)
    stop()
    if watcher is not None:
        watcher.cancel()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    if not api.started:
        raise Unavailable(f"the API could not listen on {api.config.host}:{api.config.port} (is it in use?)")


SHUTDOWN_DEADLINE_S = 40.0


def _shutdown_watchdog(worker: WorkerSupervisor | None) -> None:
    """A shutdown that hangs (a stuck thread, an engine that never answers) must still end: after the deadline,
    write every thread's stack to the log, stop the worker's group and exit."""

    def watch() -> None:
        time.sleep(SHUTDOWN_DEADLINE_S)
        log.error("shutdown took more than %.0f s; forcing exit. Threads at this moment:", SHUTDOWN_DEADLINE_S)
        faulthandler.dump_traceback(all_threads=True)
        if worker is not None and worker.process is not None:
            _signal_group(worker.process.pid, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="fleetgate-shutdown-watchdog", daemon=True).start()


def _stop_child(child: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop the worker and every process of its group (a SIGKILLed Celery leaves its pool processes behind)."""
    if child.poll() is None:
        _signal_group(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _signal_group(child.pid, signal.SIGKILL)  # whatever of the group is still there


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def detach(settings: Settings, *, timeout: float = 60.0) -> int:
    """Start `fleetgate up` in the background and wait until it answers; returns its pid."""
    pid = running_pid(settings)
    if pid is not None:
        return pid
    settings.ensure_dirs()
    out = open(settings.log_dir / "fleetgate.log", "ab")  # noqa: SIM115 (the child owns it)
    child = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "up"],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_child_env(settings),
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise FleetgateError(
                f"fleetgate exited while starting (code {child.returncode}); see {settings.log_dir / 'fleetgate.log'}"
            )
        if healthy(settings.url):
            return child.pid
        time.sleep(0.2)
    raise FleetgateError(f"fleetgate did not answer on {settings.url} within {timeout:.0f} s; see the log")


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop(settings: Settings, *, timeout: float = 30.0) -> int | None:
    """Stop this home's background controller; returns the pid stopped, or None if none ran."""
    pid = running_pid(settings)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return pid
