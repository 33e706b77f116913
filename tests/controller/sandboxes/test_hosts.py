"""Docker hosts: clear errors for an engine that is away, and no half-working sandboxes on remote engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import Settings
from controller.errors import EngineUnavailable, Invalid
from controller.models import SandboxCreate
from controller.sandboxes.hosts import DockerHosts, validate_host_url
from controller.sandboxes.service import SandboxService


def test_an_engine_that_is_not_there_is_named_with_what_to_do(tmp_path: Path) -> None:
    hosts = DockerHosts(f"unix://{tmp_path}/no.sock", timeout_s=2)
    with pytest.raises(EngineUnavailable) as info:
        hosts.local.ping()
    assert "Docker engine of host 'local'" in info.value.message
    assert "Start it" in info.value.message


def test_host_urls_must_be_docker_schemes() -> None:
    for url in ("unix:///var/run/docker.sock", "ssh://ops@builder", "tcp://10.0.0.5:2376"):
        assert validate_host_url(url) == url
    with pytest.raises(Invalid, match="must start with"):
        validate_host_url("http://example/")


def test_sandboxes_are_refused_on_remote_engines(tmp_path: Path) -> None:
    hosts = DockerHosts(f"unix://{tmp_path}/no.sock")
    hosts.add("builder", "ssh://ops@builder.example")
    service = SandboxService(settings=Settings(home=tmp_path), hosts=hosts, instance="testhosts")
    with pytest.raises(Invalid, match="remote"):
        service.plan(session=None, request=SandboxCreate(image="x", host="builder"))  # type: ignore[arg-type]
