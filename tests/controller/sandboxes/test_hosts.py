"""Docker hosts: clear errors for an engine that is away, and no half-working sandboxes on remote engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import Settings
from controller.errors import EngineUnavailable, HostNotFound, Invalid
from controller.models import SandboxCreate
from controller.sandboxes import lifecycle
from controller.sandboxes.hosts import Hosts, docker_engines, validate_host_url
from controller.sandboxes.memory import MemoryEngine


def test_an_engine_that_is_not_there_is_named_with_what_to_do(tmp_path: Path) -> None:
    hosts = Hosts(f"unix://{tmp_path}/no.sock", connect=docker_engines(timeout_s=2))
    with pytest.raises(EngineUnavailable) as info:
        hosts.local.ping()
    assert "Docker engine of host 'local'" in info.value.message
    assert "Start it" in info.value.message


def test_host_urls_must_be_docker_schemes() -> None:
    for url in ("unix:///var/run/docker.sock", "ssh://ops@builder", "tcp://10.0.0.5:2376"):
        assert validate_host_url(url) == url
    with pytest.raises(Invalid, match="must start with"):
        validate_host_url("http://example/")


def test_a_host_another_process_registered_is_found_and_an_unknown_one_is_named() -> None:
    hosts = Hosts("memory://", connect=MemoryEngine, lookup={"b": "ssh://b"}.get)
    assert hosts.get("b").url == "ssh://b"
    with pytest.raises(HostNotFound, match="no Docker host 'c'"):
        hosts.get("c")


def test_sandboxes_are_refused_on_remote_engines(tmp_path: Path) -> None:
    remote = MemoryEngine("builder", "ssh://ops@builder.example", local=False)
    with pytest.raises(Invalid, match="remote"):
        lifecycle.plan(
            request=SandboxCreate(image="x", host="builder"), template=None, engine=remote, settings=Settings()
        )
