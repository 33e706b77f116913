"""A real management API for the fast tier: the app on uvicorn over a fleet with an in-memory engine, no Redis.

For tests of routes and CLI commands whose flows touch only the database (admin settings, services, secrets);
what needs containers or the worker stays with the integration tier's `controller` fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from controller.config import Settings
from controller.db import migrate
from controller.fleet import Fleet
from controller.main import create_app
from controller.models import Role
from controller.sandboxes.memory import MemoryEngine, MemoryWorkspaces
from tests.conftest import free_port
from tests.controller.flows.conftest import RecordedTasks, RecordedWakes


@dataclass
class Served:
    url: str
    fleet: Fleet
    home: Path
    _tokens: dict[Role, str] = field(default_factory=dict)

    def token(self, role: Role = Role.admin) -> str:
        if role not in self._tokens:
            minted = self.fleet.admin.mint_token(actor="test", name=f"{role.value}-user", role=role, label="test")
            self._tokens[role] = minted.token
        return self._tokens[role]

    def http(self, role: Role = Role.admin) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token(role)}"}, timeout=30)

    def cli_env(self, role: Role = Role.admin) -> dict[str, str]:
        """What `fleetgate` needs in its environment to talk to this API."""
        return {
            "FLEETGATE_URL": self.url,
            "FLEETGATE_TOKEN": self.token(role),
            "FLEETGATE_ENV_FILE": str(self.home / "none.env"),
        }


def fast_fleet(home: Path, **settings: Any) -> Fleet:
    """A fast-tier fleet on a migrated `home`: an in-memory engine, recorded tasks and wake-ups, no Redis."""
    config = Settings(
        home=home,
        **{"instance": "fast", "docker_url": "memory://local", "redis_url": "redis://127.0.0.1:1/0", **settings},
    )
    config.ensure_dirs()
    migrate(config)
    engine = MemoryEngine()
    return Fleet(
        config,
        tasks=RecordedTasks(),
        wake=RecordedWakes(),
        connect=lambda name, url: engine,
        workspaces=MemoryWorkspaces(),
    )


@contextmanager
def served_fleet(home: Path) -> Iterator[Served]:
    """The management API of a fresh fast-tier fleet on `home`, on a free loopback port."""
    fleet = fast_fleet(home)
    port = free_port()
    app = create_app(fleet, reconcile_on_start=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the fast API stopped while starting"
        assert time.monotonic() < deadline, "the fast API did not start within 30 s"
        time.sleep(0.02)
    try:
        yield Served(url=f"http://127.0.0.1:{port}", fleet=fleet, home=home)
    finally:
        server.should_exit = True
        thread.join(10)
        fleet.db.dispose()
