"""install.sh for real: a second install next to whatever this machine runs, on its own prefix, home, port, Redis
database and settings file. It installs fleetgate into a new virtual environment (non-editable, from the package
index), checks the images (already built, so that step is the idempotent skip), initialises, starts the controller,
then runs again and must change nothing that works.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, REPO, free_port, remove_instance, unmount_below, wait_for

INSTALL = REPO / "install.sh"
TOKEN = re.compile(r"admin token \(shown once\): (fg_[A-Za-z0-9_-]{20,})")
ANY_TOKEN = re.compile(r"\bfg_[A-Za-z0-9_-]{20,}")

pytestmark = pytest.mark.integration


def run_install(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"install.sh exited {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return result


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_status(url: str, token: str) -> dict[str, Any] | None:
    """The controller's health checks once its Celery worker has announced itself, else None."""
    response = httpx.get(f"{url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    checks: dict[str, Any] = response.json()["checks"]
    return checks if checks["workers"] >= 1 else None


@pytest.mark.timeout(1200)
def test_install_then_rerun_changes_nothing(tmp_path: Path) -> None:
    # No session fixtures on purpose: install.sh itself starts the engine and Redis and builds (or, when scripts/test
    # built them already, skips) the images, and this test touches only its own instance and Redis database.
    prefix, home, env_file = tmp_path / "opt", tmp_path / "home", tmp_path / "fleetgate.env"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    install_redis = REDIS_URL.rsplit("/", 1)[0] + "/13"
    argv = [
        str(INSTALL),
        "--prefix",
        str(prefix),
        "--home",
        str(home),
        "--bind",
        f"127.0.0.1:{port}",
        "--redis-url",
        install_redis,
        "--env-file",
        str(env_file),
        "--no-link",
    ]
    # Nothing of the test's own settings may reach the install: it must take all of them from its options.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    fleetgate = prefix / "venv" / "bin" / "fleetgate"
    cli_env = {**env, "FLEETGATE_ENV_FILE": str(env_file)}
    pid_file = home / "run" / "fleetgate.pid"
    try:
        with contextlib.suppress(redis.ConnectionError):  # leftovers of a killed run; install.sh starts Redis
            redis.Redis.from_url(install_redis).flushdb()
        first = run_install(argv, env, timeout=900)
        assert url in first.stdout, first.stdout
        found = TOKEN.search(first.stdout)
        assert found, f"no admin token in the output:\n{first.stdout}"
        token = found.group(1)

        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        me = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "admin"
        try:
            checks = wait_for(lambda: worker_status(url, token), timeout=90, what="the installed controller's worker")
        except AssertionError as e:
            log = home / "logs" / "worker.log"
            tail = "\n".join(log.read_text().splitlines()[-15:]) if log.exists() else "(no worker log)"
            raise AssertionError(f"{e}; the end of {log}:\n{tail}") from None
        assert checks["database"] == "ok", checks
        assert checks["redis"] == "ok", checks
        assert set(checks["docker"].values()) == {"ok"}, checks
        assert "gVisor: runsc is registered with the Docker engine" in first.stdout, first.stdout
        assert checks["isolation"] == {"local": "gVisor (runsc): each sandbox has a kernel of its own"}, checks

        settings = env_file.read_text()
        assert f"FLEETGATE_HOME={home}" in settings
        assert f"FLEETGATE_BIND=127.0.0.1:{port}" in settings
        assert f"FLEETGATE_REDIS_URL={install_redis}" in settings
        pid = int(pid_file.read_text())
        assert pid_alive(pid)

        second = run_install(argv, env, timeout=600)
        assert not ANY_TOKEN.search(second.stdout + second.stderr), second.stdout
        assert "admin exists" in second.stdout, second.stdout
        assert url in second.stdout, second.stdout
        assert env_file.read_text() == settings, "a rerun rewrote the settings file"
        assert int(pid_file.read_text()) == pid, "a rerun replaced the running controller"
        assert pid_alive(pid)
        me = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200, me.text

        down = subprocess.run(
            [str(fleetgate), "down"], env=cli_env, capture_output=True, text=True, timeout=90, check=False
        )
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"pid {pid}" in down.stdout, down.stdout
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the controller to exit")
        assert not pid_file.exists()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        stop_install(fleetgate, cli_env, pid_file)
        instance_file = home / "instance-id"
        if instance_file.exists():
            instance = instance_file.read_text().strip()
            client = docker.from_env()
            try:
                remove_instance(client, lambda inst: inst == instance)
            finally:
                client.close()
        unmount_below(home)
        redis.Redis.from_url(install_redis).flushdb()


def stop_install(fleetgate: Path, env: dict[str, str], pid_file: Path) -> None:
    """Stop the installed controller whatever state the test left it in."""
    if fleetgate.exists():
        subprocess.run([str(fleetgate), "down"], env=env, capture_output=True, timeout=90, check=False)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
