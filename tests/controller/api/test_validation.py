"""Bad input gets a clear 4xx a person can act on, and a failed create leaves nothing behind."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.config import Settings
from controller.fleet import Fleet
from controller.main import create_app
from controller.sandboxes.spec import LABEL_INSTANCE
from tests.conftest import Controller


def footprint(admin: httpx.Client, docker_client: Any, instance: str) -> tuple[set[str], set[str], set[str]]:
    rows = {s["id"] for s in admin.get("/api/v1/sandboxes", params={"all": True, "limit": 1000}).json()["items"]}
    containers = {
        c.id for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
    }
    volumes = {v.name for v in docker_client.volumes.list(filters={"label": f"{LABEL_INSTANCE}={instance}"})}
    return rows, containers, volumes


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"image": "no-such-image:1"}, 422, ["no-such-image:1", "fleetgate images build"]),
        ({"template": "no-such-template"}, 404, ["no-such-template"]),
        ({"resources": {"cpus": 512}}, 422, ["cpus"]),
        ({"resources": {"cpus": 0.001}}, 422, ["cpus", "greater than or equal to 0.01"]),
        ({"resources": {"cpus": 64}}, 422, ["more than host", "cpus"]),
        ({"resources": {"memory_mb": 900000}}, 422, ["memory_mb", "more than host"]),
        ({"resources": {"memory_mb": 1}}, 422, ["memory_mb", "greater than or equal to 16"]),
        ({"resources": {"pids": 2}}, 422, ["pids"]),
        ({"resources": {"pids": -1}}, 422, ["pids"]),
        ({"ttl_s": 10**9}, 422, ["ttl_s", "maximum"]),
        ({"ttl_s": 0}, 422, ["ttl_s"]),
        ({"env": {"1BAD": "x"}}, 422, ["1BAD", "valid variable name"]),
        ({"env": {"FLEETGATE_SANDBOX_ID": "x"}}, 422, ["reserved"]),
        ({"command": []}, 422, ["command"]),
        ({"command": "echo hi"}, 422, ["command"]),
        ({"colour": "blue"}, 422, ["colour", "not a field"]),
        ({"resources": {"gpus": 1}}, 422, ["resources.gpus", "not a field"]),
    ],
)
def test_bad_create_requests_get_a_clear_4xx_and_leave_nothing(
    admin: httpx.Client, docker_client: Any, controller: Controller, body: dict[str, Any], status: int, words: list[str]
) -> None:
    before = footprint(admin, docker_client, controller.instance)
    response = admin.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", **body})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, detail
    assert footprint(admin, docker_client, controller.instance) == before


def build_image(docker_client: Any, tmp_path: Any, ref: str, dockerfile: str) -> str:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    docker_client.images.build(path=str(tmp_path), tag=ref, network_mode="none", rm=True)
    return ref


@pytest.fixture
def image_without_python(docker_client: Any, tmp_path: Any) -> Iterator[str]:
    """A real image with no python3: it cannot host the runtime."""
    (tmp_path / "hello.txt").write_text("hi\n")
    tar = subprocess.run(["tar", "-C", str(tmp_path), "-c", "hello.txt"], check=True, capture_output=True).stdout
    docker_client.api.import_image_from_data(tar, repository="fleetgate-test/no-python", tag="1")
    yield "fleetgate-test/no-python:1"
    docker_client.images.remove("fleetgate-test/no-python:1", force=True)


@pytest.fixture
def image_with_a_file_for_workspace(docker_client: Any, tmp_path: Any) -> Iterator[str]:
    """A real image the engine refuses only once the volume exists: /workspace is a file, not a folder."""
    ref = build_image(
        docker_client,
        tmp_path,
        "fleetgate-test/workspace-file:1",
        "FROM fleetgate/python:latest\nUSER root\nWORKDIR /\nRUN rm -rf /workspace && touch /workspace\n",
    )
    yield ref
    docker_client.images.remove(ref, force=True)


def test_an_image_without_python_is_refused_before_anything_is_made(
    admin: httpx.Client, docker_client: Any, controller: Controller, image_without_python: str
) -> None:
    before = footprint(admin, docker_client, controller.instance)
    response = admin.post("/api/v1/sandboxes", json={"image": image_without_python})
    assert response.status_code == 422, response.text
    assert "no working python3" in response.json()["detail"]
    assert footprint(admin, docker_client, controller.instance) == before


def test_a_create_that_fails_at_the_engine_is_rolled_back(
    admin: httpx.Client, docker_client: Any, controller: Controller, image_with_a_file_for_workspace: str
) -> None:
    # The row, the credentials folder and the volume all exist when the engine refuses the container.
    before = footprint(admin, docker_client, controller.instance)
    folders = {p.name for p in (controller.home / "sandboxes").iterdir()}
    response = admin.post("/api/v1/sandboxes", json={"image": image_with_a_file_for_workspace})
    assert response.status_code == 422, response.text
    assert "cannot host a sandbox" in response.json()["detail"]
    assert footprint(admin, docker_client, controller.instance) == before
    assert {p.name for p in (controller.home / "sandboxes").iterdir()} <= folders | _pool_ids(controller)


def _pool_ids(controller: Controller) -> set[str]:
    with sqlite3.connect(controller.home / "fleetgate.db") as db:
        return {row[0] for row in db.execute("select id from sandbox where status in ('pooled', 'warming')")}


def test_malformed_json_is_a_422_that_says_so(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/sandboxes", content=b'{"image": "x",', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


def test_oversized_body_is_a_413(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/sandboxes", json={"env": {"BIG": "x" * (2 << 20)}})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


@pytest.mark.parametrize("bad_id", ["nope", "sb_XYZ", "sb_0123456789abc", "sb_%2e%2e"])
def test_malformed_sandbox_ids_are_refused_clearly(admin: httpx.Client, bad_id: str) -> None:
    response = admin.get(f"/api/v1/sandboxes/{bad_id}")
    assert response.status_code in (404, 422)
    assert "sandbox" in response.json()["detail"].lower()


def test_unknown_sandbox_is_a_404(admin: httpx.Client) -> None:
    for method, path in (
        ("GET", "/api/v1/sandboxes/sb_000000000000"),
        ("POST", "/api/v1/sandboxes/sb_000000000000/stop"),
        ("DELETE", "/api/v1/sandboxes/sb_000000000000"),
        ("GET", "/api/v1/sandboxes/sb_000000000000/logs"),
    ):
        response = admin.request(method, path)
        assert response.status_code == 404, path
        assert "sb_000000000000" in response.json()["detail"]
    response = admin.post("/api/v1/sandboxes/sb_000000000000/exec", json={"command": ["true"]})
    assert response.status_code == 404


def test_bad_exec_requests(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    for body, word in (
        ({"command": []}, "command"),
        ({"command": ["true"], "timeout_s": -1}, "timeout_s"),
        ({"command": ["true"], "timeout_s": 99999}, "timeout_s"),
        ({"command": ["true"], "workdir": "relative"}, "workdir"),
    ):
        response = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json=body)
        assert response.status_code == 422, body
        assert word in response.json()["detail"]
    missing = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["no-such-binary"]})
    assert missing.status_code == 200
    assert missing.json()["exit_code"] in (126, 127)
    assert "no-such-binary" in missing.json()["stdout"] + missing.json()["stderr"]


def test_unknown_routes_and_methods_answer_json(admin: httpx.Client) -> None:
    response = admin.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert "/api/v1" in response.json()["detail"]
    response = admin.put("/api/v1/sandboxes")
    assert response.status_code == 405


@pytest.fixture
def engineless(tmp_path: Any, redis_url: str) -> Iterator[tuple[TestClient, str]]:
    """A real app whose Docker engine is not there (a socket path that does not exist)."""
    from controller.auth import create_admin
    from controller.db import migrate, session_scope

    settings = Settings(
        home=tmp_path, docker_url=f"unix://{tmp_path}/no-docker.sock", redis_url=redis_url, instance="testnoengine"
    )
    migrate(settings)
    fleet = Fleet(settings)
    with session_scope(fleet.db) as session:
        token = create_admin(session=session).token
    with TestClient(create_app(fleet, reconcile_on_start=False)) as client:
        yield client, token


def test_an_unreachable_engine_is_a_clear_503(engineless: tuple[TestClient, str]) -> None:
    client, token = engineless
    response = client.post(
        "/api/v1/sandboxes", json={"image": "fleetgate/python:latest"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "Docker engine of host 'local'" in detail
    assert "Start it" in detail
    status = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["checks"]["docker"]["local"].startswith("error:")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ttl_s": 10**30}, ["ttl_s", "longer than the maximum"]),
        ({"cpus": 200}, ["resources.cpus 200 is more than host"]),
        ({"memory_mb": 1 << 20}, ["resources.memory_mb", "is more than host"]),
    ],
)
def test_a_template_no_sandbox_could_be_made_from_is_refused_when_saved(
    admin: httpx.Client, body: dict[str, Any], words: list[str]
) -> None:
    response = admin.post("/api/v1/templates", json={"name": "impossible", "image": "fleetgate/python:latest", **body})
    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["detail"]
    assert admin.get("/api/v1/templates/impossible").status_code == 404


def test_a_template_update_to_an_impossible_ttl_is_refused(admin: httpx.Client) -> None:
    made = admin.post("/api/v1/templates", json={"name": "ttl-edit", "image": "fleetgate/python:latest"})
    assert made.status_code == 201, made.text
    try:
        response = admin.patch("/api/v1/templates/ttl-edit", json={"ttl_s": 10**30})
        assert response.status_code == 422
        assert "longer than the maximum" in response.json()["detail"]
        assert admin.get("/api/v1/templates/ttl-edit").json()["ttl_s"] is None
    finally:
        admin.delete("/api/v1/templates/ttl-edit")
