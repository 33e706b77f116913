"""Shared fixtures: the real Docker engine, a real Redis, and a real controller process (API, gateway, worker).

Nothing here is faked. `./scripts/test` starts dockerd and redis-server when they are not running; if they are
still missing here the session fails with what to do, it never skips. Every container and volume a test run
makes carries `fleetgate.instance=<this run's instance>` and is removed at the end (and leftovers of killed runs
at the start).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import redis

from controller.names import Keys
from controller.sandboxes.spec import LABEL_INSTANCE

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("FLEETGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# The two tiers. A test that asks for one of these services (directly or through another fixture) is an
# integration test; everything else is the fast tier, which `./scripts/test` runs first with the services made
# unreachable (FLEETGATE_TEST_TIER=fast), so a fast test that strays onto Docker or Redis fails there.
SERVICES = frozenset({"docker_client", "redis_url", "pg_url"})
FAST_TIER = os.environ.get("FLEETGATE_TEST_TIER") == "fast"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def no_services_in_the_fast_tier(service: str) -> None:
    if FAST_TIER:
        pytest.fail(f"the fast tier has no {service}; a test that needs it belongs to the integration tier")


TEST_INSTANCE_PREFIX = "test"
FLEETGATE = str(Path(sys.executable).parent / "fleetgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remove_instance(client: Any, match: Any) -> None:
    """Remove every container and volume whose instance label satisfies `match`."""
    for c in client.containers.list(all=True, filters={"label": LABEL_INSTANCE}, ignore_removed=True):
        if match(c.labels.get(LABEL_INSTANCE, "")):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
    for v in client.volumes.list(filters={"label": LABEL_INSTANCE}):
        if match((v.attrs.get("Labels") or {}).get(LABEL_INSTANCE, "")):
            with contextlib.suppress(docker.errors.NotFound):
                v.remove(force=True)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    no_services_in_the_fast_tier("Docker engine")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        pytest.fail(f"the Docker engine is not answering ({e}); run the tests with ./scripts/test, which starts it")
    remove_instance(client, lambda inst: inst.startswith(TEST_INSTANCE_PREFIX))
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    no_services_in_the_fast_tier("Redis")
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError as e:
        pytest.fail(f"Redis is not answering at {REDIS_URL} ({e}); run the tests with ./scripts/test")
    r.flushdb()
    return REDIS_URL


@pytest.fixture(scope="session")
def python_image(docker_client: Any) -> str:
    """The bundled agent image, built offline on first use (debootstrap + docker import + Dockerfile)."""
    from controller.sandboxes.images import build_images

    return build_images(docker_client, progress=lambda _: None)["python"]


@dataclass
class Controller:
    """A real `fleetgate up` process on its own home, port, Redis database and instance label."""

    home: Path
    port: int
    redis_url: str
    instance: str
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    admin_token: str = ""
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FLEETGATE_HOME=str(self.home),
            FLEETGATE_BIND=f"127.0.0.1:{self.port}",
            FLEETGATE_REDIS_URL=self.redis_url,
            FLEETGATE_INSTANCE=self.instance,
            FLEETGATE_URL=self.url,
            FLEETGATE_ENV_FILE=str(self.home / "none.env"),
            **self.extra_env,
        )
        return env

    def cli(
        self,
        *args: str,
        token: str | None = None,
        check: bool = True,
        timeout: float = 120,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        env["FLEETGATE_TOKEN"] = self.admin_token if token is None else token
        result = subprocess.run(
            [FLEETGATE, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"fleetgate {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        log = open(self.home / "controller.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([FLEETGATE, "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"controller exited early; see {self.home / 'controller.log'}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("controller did not come up within 60 s")

    def stop(self, sig: int = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:  # never leave a controller behind to steal the next run's work
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("the controller did not stop within 60 s of SIGTERM") from None
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def token(self, role: str) -> str:
        if role not in self._tokens:
            self._tokens[role] = self.cli("token", "create", "--name", f"{role}-user", "--role", role).stdout.strip()
        return self._tokens[role]

    def http(self, role: str = "admin", token: str | None = None) -> httpx.Client:
        secret = token if token is not None else (self.admin_token if role == "admin" else self.token(role))
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120)


def make_controller(root: Path, redis_url: str, **extra_env: str) -> Controller:
    home = root / "home"
    home.mkdir(parents=True)
    instance = f"{TEST_INSTANCE_PREFIX}{secrets.token_hex(3)}"
    ctl = Controller(home=home, port=free_port(), redis_url=redis_url, instance=instance, extra_env=extra_env)
    out = ctl.cli("init", token="")
    ctl.admin_token = out.stdout.strip().rsplit(" ", 1)[-1]
    assert ctl.admin_token.startswith("fg_"), out.stdout
    return ctl


def forget_instance(redis_url: str, instance: str) -> int:
    """Delete what a controller instance kept in Redis (its event streams, samples, Celery queue and bindings);
    Celery's task results expire by themselves within the hour."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        keys = [key for pattern in Keys(instance).everything for key in client.scan_iter(match=pattern, count=1000)]
        return int(client.delete(*keys)) if keys else 0
    except redis.ConnectionError:  # a Redis the test stopped for good took the keys with it
        return 0
    finally:
        client.close()


def unmount_below(folder: Path) -> None:
    """Unmount the workspaces a controller left mounted under its home (sandboxes outlive their controller)."""
    below = str(folder.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(below)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextlib.contextmanager
def running(ctl: Controller, docker_client: Any) -> Iterator[Controller]:
    """The controller started; stopped afterwards, with every container, volume and mounted workspace it made
    removed, and what it kept in Redis."""
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()
        remove_instance(docker_client, lambda inst: inst == ctl.instance)
        unmount_below(ctl.home)
        forget_instance(ctl.redis_url, ctl.instance)


@pytest.fixture(scope="session")
def controller(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, redis_url: str, python_image: str
) -> Iterator[Controller]:
    ctl = make_controller(
        tmp_path_factory.mktemp("controller"),
        redis_url,
        FLEETGATE_REAP_INTERVAL_S="1",
        FLEETGATE_RECONCILE_INTERVAL_S="2",
        FLEETGATE_POOL_SIZE="1",
        FLEETGATE_HEARTBEAT_S="1",
    )
    with running(ctl, docker_client):
        yield ctl


@pytest.fixture
def admin(controller: Controller) -> Iterator[httpx.Client]:
    with controller.http("admin") as client:
        yield client


@pytest.fixture
def sandbox_factory(admin: httpx.Client) -> Iterator[Any]:
    """Create sandboxes through the API; whatever a test leaves is removed after it."""
    made: list[str] = []

    def create(**body: Any) -> dict[str, Any]:
        body.setdefault("image", "fleetgate/python:latest")
        response = admin.post("/api/v1/sandboxes", json=body)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
        return dict(response.json())

    yield create
    for sandbox_id in made:
        admin.delete(f"/api/v1/sandboxes/{sandbox_id}")


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
