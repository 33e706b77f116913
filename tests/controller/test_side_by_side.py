"""Two controllers with their own homes, ports and Redis databases on one machine do not see or touch each other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from tests.conftest import Controller, make_controller, running


@pytest.fixture
def second(tmp_path: Path, docker_client: Any, python_image: str) -> Iterator[Controller]:
    ctl = make_controller(
        tmp_path, "redis://127.0.0.1:6379/12", FLEETGATE_RECONCILE_INTERVAL_S="1", FLEETGATE_POOL_SIZE="0"
    )
    with running(ctl, docker_client):
        yield ctl


def test_two_controllers_run_side_by_side(controller: Controller, second: Controller, docker_client: Any) -> None:
    with controller.http() as first_api, second.http() as second_api:
        mine = first_api.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest"}).json()
        theirs = second_api.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest"}).json()
        try:
            first_ids = {s["id"] for s in first_api.get("/api/v1/sandboxes").json()["items"]}
            second_ids = {s["id"] for s in second_api.get("/api/v1/sandboxes").json()["items"]}
            assert mine["id"] in first_ids
            assert mine["id"] not in second_ids
            assert theirs["id"] in second_ids
            assert theirs["id"] not in first_ids
            # Each one's reconcile (on restart, and every second in the second's worker) leaves the other's alone.
            second.restart()
            docker_client.containers.get(mine["container_id"])
            assert first_api.get(f"/api/v1/sandboxes/{mine['id']}").json()["status"] == "running"
            # A token of one controller means nothing to the other.
            assert second_api.get(f"/api/v1/sandboxes/{mine['id']}").status_code == 404
            with controller.http(token=second.admin_token) as crossed:
                assert crossed.get("/api/v1/sandboxes").status_code == 401
        finally:
            first_api.delete(f"/api/v1/sandboxes/{mine['id']}")
            second_api.delete(f"/api/v1/sandboxes/{theirs['id']}")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(theirs["container_id"])
