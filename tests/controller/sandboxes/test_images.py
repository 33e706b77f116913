"""The images: reading this machine's apt sources for debootstrap (unit tests on file trees made here), and
`fleetgate images build --base` on a real engine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest
import redis

from controller.sandboxes.images import PYTHON_REPO, ImageBuildFailed, build_images, host_apt_source, inputs_digest
from sandbox_images import ROOT as IMAGES_ROOT
from tests.conftest import FLEETGATE, wait_for


def machine(tmp_path: Path, os_release: str, files: dict[str, str]) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text(os_release)
    for name, text in files.items():
        (tmp_path / "etc/apt" / name).write_text(text)
    return tmp_path


def test_deb822_sources_give_the_main_mirror_not_security(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        "VERSION_CODENAME=bookworm\n",
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n"
            )
        },
    )
    assert host_apt_source(root) == ("http://mirror.example/debian", "bookworm")


def test_one_line_sources_with_options(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        'VERSION_CODENAME="jammy"\n',
        {"sources.list": "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://archive.example/ubuntu jammy main\n"},
    )
    assert host_apt_source(root) == ("http://archive.example/ubuntu", "jammy")


def test_no_usable_source_says_what_to_do(tmp_path: Path) -> None:
    root = machine(tmp_path, "VERSION_CODENAME=bookworm\n", {"sources.list": "deb-src http://x/debian bookworm main\n"})
    with pytest.raises(ImageBuildFailed, match="--base IMAGE"):
        host_apt_source(root)


def test_digest_changes_with_any_input() -> None:
    assert inputs_digest("bookworm", "python3") == inputs_digest("bookworm", "python3")
    assert inputs_digest("bookworm", "python3") != inputs_digest("bookworm", "python3", "git")
    assert inputs_digest("ab", "c") != inputs_digest("a", "bc")


def images_build(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETGATE_HOME": str(tmp_path / "home")}
    command = [FLEETGATE, "images", "build", *args]
    return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)


def test_building_on_a_given_base_image_takes_the_dockerfile_path(
    tmp_path: Path, docker_client: Any, python_image: str
) -> None:
    # What a registry pull leaves behind is an image in the engine's store under the name asked for; one built
    # there is found by FROM the same way (and there is no registry here to pull from).
    upstream = "fleetgate-test/upstream:bookworm"
    stand_in = b"FROM fleetgate/base:latest\nLABEL fleetgate.test=upstream\n"
    docker_client.images.build(fileobj=io.BytesIO(stand_in), tag=upstream, network_mode="none", rm=True)
    dockerfile = (IMAGES_ROOT / "python" / "Dockerfile").read_text()
    ref = f"{PYTHON_REPO}:{inputs_digest(docker_client.images.get(upstream).id, dockerfile)}"
    try:
        built = images_build(tmp_path, "--base", upstream, "--force")
        assert built.returncode == 0, built.stderr
        assert f"python: {ref}" in built.stdout
        assert f"base: {upstream}" in built.stdout
        image = docker_client.images.get(ref)
        assert image.labels["fleetgate.image"] == "python"
        assert docker_client.images.get(f"{PYTHON_REPO}:latest").id == image.id
        assert image.labels["fleetgate.test"] == "upstream"  # built on the given base, not on fleetgate/base
        probe = "id -u; python3 -c 'import sys; print(sys.version_info >= (3, 9))'"
        who = docker_client.containers.run(ref, ["sh", "-c", probe], remove=True, network_mode="none")
        assert who.decode().split() == ["10001", "True"]
        again = images_build(tmp_path, "--base", upstream)
        assert again.returncode == 0, again.stderr
        assert f"{ref} is current" in again.stdout
    finally:
        build_images(docker_client)  # fleetgate/python:latest back on the debootstrap base for the other tests
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(ref)
        docker_client.images.remove(upstream)
    assert docker_client.images.get(f"{PYTHON_REPO}:latest").id == docker_client.images.get(python_image).id


def test_a_base_image_that_cannot_be_pulled_is_a_clear_error(tmp_path: Path) -> None:
    # A registry on a loopback port where nothing listens: the pull fails at once, and says what to do instead.
    failed = images_build(tmp_path, "--base", "127.0.0.1:9/nobody/absent:1.0")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "the base image 127.0.0.1:9/nobody/absent:1.0 is not on this engine and could not be pulled" in failed.stderr
    assert "leave out --base" in failed.stderr


def test_an_image_build_through_the_api_reports_its_outcome_and_clock_tasks_keep_no_results(
    admin: httpx.Client, redis_url: str
) -> None:
    started = admin.post("/api/v1/images/build", json={})
    assert started.status_code == 202, started.text
    task_id = started.json()["id"]
    state = wait_for(
        lambda: (s := admin.get(f"/api/v1/images/builds/{task_id}").json())["state"] == "SUCCESS" and s,
        timeout=120,
        what="the build to finish",
    )
    assert state["result"]["python"].startswith("fleetgate/python:")
    assert state["error"] is None
    # The controller's clock tasks (sweeps every second, samples, reconcile) have run all along: only the build's
    # outcome is kept.
    store = redis.Redis.from_url(redis_url)
    kept = [store.get(key) for key in store.scan_iter(match="celery-task-meta-*", count=1000)]
    assert [json.loads(k or b"{}").get("task_id") for k in kept] == [task_id]
