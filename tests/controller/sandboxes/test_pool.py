"""The warm pool: claimed on create, configured before it is handed out, refilled by the real Celery worker."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import docker.errors
import httpx
import pytest

from controller.sandboxes.spec import LABEL_INSTANCE, LABEL_SANDBOX, LABEL_TEMPLATE
from tests.conftest import Controller, wait_for


@pytest.fixture
def pooled_template(admin: httpx.Client) -> Iterator[dict[str, Any]]:
    name = f"pool-{secrets.token_hex(3)}"
    response = admin.post("/api/v1/templates", json={"name": name, "image": "fleetgate/python:latest", "pool_size": 2})
    assert response.status_code == 201, response.text
    yield response.json()
    admin.delete(f"/api/v1/templates/{name}")


def pool_ready(admin: httpx.Client, name: str) -> int:
    return int(admin.get(f"/api/v1/templates/{name}").json()["pool_ready"])


def pooled_containers(docker_client: Any, controller: Controller, admin: httpx.Client, template: str) -> set[str]:
    """Running containers of the template that no listed sandbox owns: its pool's."""
    listed = {s["container_id"] for s in admin.get("/api/v1/sandboxes", params={"limit": 1000}).json()["items"]}
    containers = docker_client.containers.list(
        filters={"label": [f"{LABEL_INSTANCE}={controller.instance}", f"{LABEL_TEMPLATE}={template}"]}
    )
    return {c.id for c in containers} - listed


def test_create_claims_a_warm_sandbox_and_the_worker_refills_the_pool(
    controller: Controller, admin: httpx.Client, docker_client: Any, pooled_template: dict[str, Any]
) -> None:
    name = pooled_template["name"]
    wait_for(lambda: pool_ready(admin, name) == 2, timeout=60, what="the worker to fill the pool")
    warm = pooled_containers(docker_client, controller, admin, name)

    started = time.perf_counter()
    response = admin.post("/api/v1/sandboxes", json={"template": name, "env": {"WHO": "claimed"}})
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    sandbox = response.json()
    try:
        assert sandbox["container_id"] in warm
        assert sandbox["status"] == "running"
        assert elapsed < 1.0
        # Configured before it was handed out: its own env, its own working credentials.
        out = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["sh", "-c", "echo $WHO"]})
        assert out.json()["stdout"] == "claimed\n"
        wait_for(
            lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["last_heartbeat_at"],
            timeout=15,
            what="the claimed sandbox's supervisor to reach the gateway with its new token",
        )
        wait_for(lambda: pool_ready(admin, name) == 2, timeout=60, what="the worker to refill the pool")
    finally:
        admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")


def test_claimed_sandbox_runs_the_requested_command(admin: httpx.Client, pooled_template: dict[str, Any]) -> None:
    name = pooled_template["name"]
    wait_for(lambda: pool_ready(admin, name) >= 1, timeout=60, what="a ready pool entry")
    sandbox = admin.post("/api/v1/sandboxes", json={"template": name, "command": ["echo", "from-the-pool"]}).json()
    try:
        wait_for(
            lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}/logs").json()["items"],
            timeout=15,
            what="the command's output",
        )
        lines = admin.get(f"/api/v1/sandboxes/{sandbox['id']}/logs").json()["items"]
        assert [item["line"] for item in lines] == ["from-the-pool"]
    finally:
        admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")


def test_a_claim_that_cannot_be_configured_fails_closed(
    controller: Controller, admin: httpx.Client, docker_client: Any, pooled_template: dict[str, Any]
) -> None:
    name = pooled_template["name"]
    admin.patch(f"/api/v1/templates/{name}", json={"pool_size": 1})
    wait_for(lambda: pool_ready(admin, name) == 1, timeout=60, what="a pool of one")
    (broken_id,) = pooled_containers(docker_client, controller, admin, name)
    broken = docker_client.containers.get(broken_id)
    broken_sandbox = broken.labels[LABEL_SANDBOX]
    broken.kill()

    sandbox = admin.post("/api/v1/sandboxes", json={"template": name}).json()
    try:
        assert sandbox["container_id"] != broken_id
        assert sandbox["id"] != broken_sandbox
        assert sandbox["status"] == "running"
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(broken_id)
        out = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["true"]})
        assert out.json()["exit_code"] == 0
    finally:
        admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")


def test_pool_size_zero_creates_cold(
    controller: Controller, admin: httpx.Client, docker_client: Any, pooled_template: dict[str, Any]
) -> None:
    name = pooled_template["name"]
    admin.patch(f"/api/v1/templates/{name}", json={"pool_size": 0})
    wait_for(lambda: pool_ready(admin, name) == 0, timeout=60, what="the pool to drain")
    sandbox = admin.post("/api/v1/sandboxes", json={"template": name}).json()
    try:
        assert sandbox["status"] == "running"
        assert sandbox["template"] == name
    finally:
        admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")
    assert pool_ready(admin, name) == 0


def test_deleting_a_template_removes_its_pool(controller: Controller, admin: httpx.Client, docker_client: Any) -> None:
    name = f"gone-{secrets.token_hex(3)}"
    admin.post("/api/v1/templates", json={"name": name, "image": "fleetgate/python:latest", "pool_size": 1})
    wait_for(lambda: pool_ready(admin, name) == 1, timeout=60, what="a pool of one")
    before = pooled_containers(docker_client, controller, admin, name)
    assert admin.delete(f"/api/v1/templates/{name}").status_code == 204
    after = pooled_containers(docker_client, controller, admin, name)
    assert len(before - after) >= 1
