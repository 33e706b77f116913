"""The in-sandbox runtime against the real gateway app served on a unix socket (no container needed here)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import Session, select

import agent_runtime
from agent_runtime.client import Gateway, GatewayError
from controller.auth import SANDBOX_TOKEN_PREFIX, hash_token, new_secret
from controller.config import Settings
from controller.db import engine_for, migrate
from controller.events.bus import EventBus
from controller.fleet import Fleet, event_bus
from controller.gateway.app import create_gateway
from controller.models import Event, Sandbox, SandboxStatus

RUNTIME_FILES = sorted(Path(agent_runtime.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.name)
def test_runtime_parses_as_python_3_9(path: Path) -> None:
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.name)
def test_runtime_imports_only_the_standard_library(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top == "agent_runtime", f"{path.name} imports {name}"


class GatewayServer:
    """The real gateway ASGI app on a real unix socket, in a thread; can be stopped and started again."""

    def __init__(self, fleet: Fleet, bus: EventBus, path: Path) -> None:
        self.fleet = fleet
        self.bus = bus
        self.path = path
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_gateway(self.fleet, self.bus),
            uds=str(self.path),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # the supervisor's long-poll for commands does not end by itself
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Setup:
    fleet: Fleet
    bus: EventBus
    server: GatewayServer
    sandbox_id: str
    token: str
    socket: Path

    def events(self, kind: str | None = None) -> list[Event]:
        assert self.bus.flush(), "the event publisher did not catch up"
        with Session(self.fleet.db) as session:
            query = select(Event).where(Event.sandbox_id == self.sandbox_id)
            rows = list(session.exec(query.order_by(Event.id)))  # type: ignore[arg-type]
        return [e for e in rows if kind is None or e.kind == kind]

    def sandbox(self) -> Sandbox:
        with Session(self.fleet.db) as session:
            row = session.get(Sandbox, self.sandbox_id)
            assert row is not None
            return row


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str) -> Iterator[Setup]:
    settings = Settings(home=tmp_path, instance="testrt", redis_url=redis_url)
    settings.ensure_dirs()
    migrate(settings)
    bus = event_bus(settings)
    fleet = Fleet(settings, events=bus)
    secret = new_secret(SANDBOX_TOKEN_PREFIX)
    with Session(engine_for(settings.db_url)) as session:
        session.add(
            Sandbox(
                id="sb_00000000abcd",
                status=SandboxStatus.running,
                image="x",
                cpus=1,
                memory_mb=64,
                pids=64,
                token_hash=hash_token(secret),
            )
        )
        session.commit()
    socket_path = tmp_path / "rt.sock"
    server = GatewayServer(fleet, bus, socket_path)
    server.start()
    yield Setup(fleet, bus, server, "sb_00000000abcd", secret, socket_path)
    server.stop()


def test_client_calls_its_own_routes(gateway: Setup) -> None:
    client = Gateway(gateway.sandbox_id, gateway.token, str(gateway.socket))
    assert client.call("GET", "")["id"] == gateway.sandbox_id
    client.call("POST", "/heartbeat")
    assert gateway.sandbox().last_heartbeat_at is not None


def test_client_with_a_wrong_token_gets_a_clear_error(gateway: Setup) -> None:
    client = Gateway(gateway.sandbox_id, SANDBOX_TOKEN_PREFIX + "forged", str(gateway.socket))
    with pytest.raises(GatewayError) as info:
        client.call("GET", "", retry_for=0)
    assert info.value.status == 401


def test_client_rides_out_a_gateway_restart(gateway: Setup) -> None:
    client = Gateway(gateway.sandbox_id, gateway.token, str(gateway.socket))
    client.call("POST", "/heartbeat")
    gateway.server.stop()
    restarted = threading.Timer(0.5, gateway.server.start)
    restarted.start()
    client.call("POST", "/heartbeat", retry_for=15)  # blocks through the outage, then succeeds
    restarted.join()


def run_supervisor(gateway: Setup, tmp_path: Path, command: list[str], env: dict[str, str] | None = None) -> int:
    creds = tmp_path / "sandbox.json"
    creds.write_text(
        json.dumps(
            {
                "sandbox_id": gateway.sandbox_id,
                "token": gateway.token,
                "socket": str(gateway.socket),
                "command": command,
                "env": env or {},
                "heartbeat_s": 0.2,
            }
        )
    )
    environ = {
        **os.environ,
        "FLEETGATE_CREDENTIALS": str(creds),
        "PYTHONPATH": str(Path(agent_runtime.__file__).parents[1]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agent_runtime", "supervise"], env=environ, capture_output=True, timeout=60, check=False
    )
    return proc.returncode


def test_supervisor_ships_every_line_in_order_and_the_exit_status(gateway: Setup, tmp_path: Path) -> None:
    script = "import sys\nfor i in range(1200):\n    print(f'line {i}')\nprint('oops', file=sys.stderr)\nsys.exit(4)\n"
    assert run_supervisor(gateway, tmp_path, [sys.executable, "-c", script]) == 4
    stdout = [e.data["line"] for e in gateway.events("stdout")]
    assert stdout == [f"line {i}" for i in range(1200)]
    assert [e.data["line"] for e in gateway.events("stderr")] == ["oops"]
    assert gateway.sandbox().exit_code == 4
    assert gateway.sandbox().status == SandboxStatus.exited
    started = [e for e in gateway.events("agent") if e.data.get("state") == "started"]
    assert started
    assert started[0].data["command"][0] == sys.executable


def test_supervisor_passes_env_and_heartbeats_while_the_command_runs(gateway: Setup, tmp_path: Path) -> None:
    script = "import os, time\nprint(os.environ['GREETING'])\ntime.sleep(1)\n"
    assert run_supervisor(gateway, tmp_path, [sys.executable, "-c", script], {"GREETING": "hi"}) == 0
    assert [e.data["line"] for e in gateway.events("stdout")] == ["hi"]
    assert gateway.sandbox().last_heartbeat_at is not None


def test_supervisor_reports_a_command_that_cannot_start(gateway: Setup, tmp_path: Path) -> None:
    assert run_supervisor(gateway, tmp_path, ["/no/such/program"]) == 127
    assert any("cannot start" in e.data["line"] for e in gateway.events("stderr"))
    assert gateway.sandbox().exit_code == 127


def test_long_lines_are_split_not_lost(gateway: Setup, tmp_path: Path) -> None:
    script = "print('x' * 40000)"
    assert run_supervisor(gateway, tmp_path, [sys.executable, "-c", script]) == 0
    parts = [e.data["line"] for e in gateway.events("stdout")]
    assert "".join(parts) == "x" * 40000
    assert all(len(p) <= 16 * 1024 for p in parts)
