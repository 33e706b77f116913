"""Sandbox lifecycle through the REST API, on the real engine with the real worker."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from typing import Any

import docker.errors
import httpx
import pytest

from controller.sandboxes.spec import LABEL_INSTANCE, LABEL_KIND, LABEL_SANDBOX
from tests.conftest import Controller, wait_for


def run(admin: httpx.Client, sandbox_id: str, *command: str, **extra: Any) -> dict[str, Any]:
    response = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": list(command), **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_provision_exec_stop_remove(admin: httpx.Client, docker_client: Any, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    assert sandbox["status"] == "running"
    assert sandbox["id"].startswith("sb_")
    container = docker_client.containers.get(sandbox["container_id"])
    assert container.status == "running"
    assert container.labels[LABEL_SANDBOX] == sandbox["id"]
    volume = docker_client.volumes.get(sandbox["volume"])
    assert volume.attrs["Labels"][LABEL_SANDBOX] == sandbox["id"]

    result = run(admin, sandbox["id"], "sh", "-c", "echo out; echo err >&2; pwd; exit 3")
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "out\n/workspace\n", "err\n")

    stopped = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/stop").json()
    assert stopped["status"] == "stopped"
    container.reload()
    assert container.status == "exited"
    refused = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["true"]})
    assert refused.status_code == 409
    assert "stopped" in refused.json()["detail"]

    removed = admin.delete(f"/api/v1/sandboxes/{sandbox['id']}").json()
    assert removed["status"] == "removed"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(sandbox["container_id"])
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(sandbox["volume"])
    assert admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"] == "removed"
    assert admin.delete(f"/api/v1/sandboxes/{sandbox['id']}").status_code == 404


def test_workspace_survives_in_volume_when_kept(admin: httpx.Client, docker_client: Any, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(keep_volume=True)
    run(admin, sandbox["id"], "sh", "-c", "echo precious > /workspace/notes.txt")
    admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")
    volume = docker_client.volumes.get(sandbox["volume"])
    try:
        out = docker_client.containers.run(
            "fleetgate/python:latest",
            ["cat", "/w/notes.txt"],
            volumes={volume.name: {"bind": "/w", "mode": "ro"}},
            remove=True,
            network_mode="none",
            labels={LABEL_INSTANCE: "test-readback"},
        )
        assert out == b"precious\n"
    finally:
        volume.remove(force=True)


def test_env_and_command_reach_the_sandbox(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(env={"GREETING": "hello"})
    assert run(admin, sandbox["id"], "sh", "-c", "echo $GREETING")["stdout"] == "hello\n"
    assert (
        run(admin, sandbox["id"], "sh", "-c", "echo $GREETING", env={"GREETING": "override"})["stdout"] == "override\n"
    )


def test_ttl_expiry_removes_the_sandbox(admin: httpx.Client, docker_client: Any, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(ttl_s=2)
    assert sandbox["expires_at"] is not None
    wait_for(
        lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"] == "removed",
        timeout=20,
        what="the reaper to remove the expired sandbox",
    )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(sandbox["container_id"])
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(sandbox["volume"])


def test_exec_timeout_kills_the_command_and_its_children(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    started = time.monotonic()
    result = run(admin, sandbox["id"], "sh", "-c", "sleep 300 & sleep 301; echo never", timeout_s=1)
    assert result["timed_out"] is True
    assert result["exit_code"] == 124
    assert time.monotonic() - started < 10
    left = run(admin, sandbox["id"], "sh", "-c", "ps -eo args | grep -c '[s]leep 30' || true")
    assert left["stdout"].strip() == "0"


def test_exec_output_is_capped(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    result = run(admin, sandbox["id"], "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x")
    assert result["truncated"] is True
    assert len(result["stdout"]) == 1 << 20
    assert result["exit_code"] == 0


def test_list_reports_live_status(admin: httpx.Client, docker_client: Any, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    docker_client.containers.get(sandbox["container_id"]).kill()
    items = {s["id"]: s for s in admin.get("/api/v1/sandboxes").json()["items"]}
    assert items[sandbox["id"]]["status"] == "exited"
    assert items[sandbox["id"]]["exit_code"] == 137


def _db_status(controller: Controller, sandbox_id: str) -> str:
    with sqlite3.connect(controller.home / "fleetgate.db") as db:
        return str(db.execute("select status from sandbox where id = ?", (sandbox_id,)).fetchone()[0])


def test_reconcile_on_start_marks_a_container_removed_behind_its_back_gone(
    controller: Controller, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    controller.stop()
    subprocess.run(["docker", "rm", "-f", sandbox["container_id"]], check=True, capture_output=True)
    controller.start()
    # Read the database itself: a GET would refresh the status on its own and prove nothing about reconcile.
    wait_for(lambda: _db_status(controller, sandbox["id"]) == "gone", timeout=10, what="reconcile")


def test_reconcile_removes_orphans_with_our_labels(controller: Controller, docker_client: Any) -> None:
    orphan_id = "sb_0rphan000000"
    labels = {LABEL_SANDBOX: orphan_id, LABEL_INSTANCE: controller.instance, LABEL_KIND: "sandbox"}
    volume = docker_client.volumes.create(f"fleetgate-{controller.instance}-{orphan_id}", labels=labels)
    container = docker_client.containers.create(
        "fleetgate/python:latest", ["sleep", "60"], labels=labels, network_mode="none"
    )
    controller.restart()

    def cleaned() -> bool:
        try:
            docker_client.containers.get(container.id)
            return False
        except docker.errors.NotFound:
            pass
        try:
            docker_client.volumes.get(volume.name)
            return False
        except docker.errors.NotFound:
            return True

    wait_for(cleaned, timeout=15, what="the orphan container and volume to be removed")


def test_reconcile_adopts_a_sandbox_a_crash_left_creating(controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    controller.stop()
    with sqlite3.connect(controller.home / "fleetgate.db") as db:
        db.execute(
            "update sandbox set status = 'creating', created_at = datetime('now', '-1 hour') where id = ?",
            (sandbox["id"],),
        )
    controller.start()
    wait_for(lambda: _db_status(controller, sandbox["id"]) == "running", timeout=10, what="adoption")


def test_healthz_needs_no_token(controller: Controller) -> None:
    assert httpx.get(f"{controller.url}/healthz").json() == {"status": "ok"}


def test_status_reports_dependencies(admin: httpx.Client) -> None:
    body = wait_for(
        lambda: (b := admin.get("/api/v1/status").json())["checks"]["workers"] >= 1 and b,
        timeout=30,
        what="the worker to report alive",
    )
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["docker"] == {"local": "ok"}
