"""What the controller asks of a container engine, as a typed interface.

`DockerEngine` (docker_engine.py) is the real one, docker-py behind it; `MemoryEngine` (memory.py) keeps containers
in a dict, so the rules about sandboxes can be tested in milliseconds. The flows receive an `Engine` per host and
never see docker-py: its errors are translated once, in the adapter, into the domain errors named here.

Errors every method may raise: `EngineUnavailable` (the engine does not answer), `EngineError` (it failed on its
side), `Invalid` (it refused the parameters). Methods that name a container raise `ContainerMissing` when the
engine has no such container, unless they say otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from controller.errors import Conflict, NotFound
from controller.models import ExecResult


class ContainerMissing(NotFound):
    """The engine has no such container (removed behind our back, or never made)."""

    def __init__(self, container: str) -> None:
        super().__init__(f"container {container[:12]} is not on the engine")


class NotRunning(Conflict):
    """The container exists but cannot take a command (stopped, paused, exiting)."""

    def __init__(self, container: str, detail: str = "") -> None:
        super().__init__(f"container {container[:12]} is not running{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class EngineFacts:
    """What fleetgate needs to know about an engine to validate and harden a sandbox."""

    ncpu: int
    mem_bytes: int
    runtimes: frozenset[str]
    api_version: str


@dataclass(frozen=True)
class ContainerState:
    """A container's state as the engine reports it: created, running, paused, restarting, exited, dead..."""

    status: str
    exit_code: int | None = None


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    labels: Mapping[str, str]
    state: ContainerState
    created: datetime


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]
    created: datetime | None = None
    folder: str | None = None  # where its files are on the engine's machine: the folder it binds, or its mount point


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    size: int | None
    created: int | None


Progress = Callable[[str], None]


class Engine(Protocol):
    """One container engine (one host): everything the controller asks of it."""

    name: str
    url: str

    @property
    def is_local(self) -> bool:
        """Whether the engine shares this machine's files (bind mounts, /proc of exec'd processes)."""
        ...

    def facts(self) -> EngineFacts:
        """CPUs, memory and runtimes; asked once and kept."""
        ...

    def ping(self) -> None: ...

    def image_id(self, image: str) -> str:
        """The id of an image on this engine; `ImageMissing` when it has none by that name."""
        ...

    def run_to_end(self, spec: Mapping[str, Any], timeout_s: float) -> int:
        """Create, start and wait for a short-lived container, remove it, and return its exit code."""
        ...

    def create_volume(
        self, name: str, labels: Mapping[str, str], driver_opts: Mapping[str, str] | None = None
    ) -> str | None:
        """Create a named volume (`driver_opts` for the local driver: a bind of a folder, say); returns its mount
        point on the engine's machine when known."""
        ...

    def create_container(self, spec: Mapping[str, Any]) -> str:
        """Create (not start) a container from a spec of `spec.container_spec`; returns its id."""
        ...

    def start(self, container: str) -> None: ...

    def state(self, container: str) -> ContainerState | None:
        """The container's state, or None when the engine has no such container."""
        ...

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all these labels."""
        ...

    def volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]: ...

    def remove_container(self, container: str) -> None:
        """Remove by force, without its volumes; a missing container is fine."""
        ...

    def remove_volume(self, name: str) -> None:
        """A missing volume is fine; one still in use raises `Conflict`."""
        ...

    def stop(self, container: str, timeout_s: float) -> None: ...

    def pause(self, container: str) -> None: ...

    def unpause(self, container: str) -> None: ...

    def exec(
        self,
        container: str,
        command: list[str],
        *,
        env: Mapping[str, str],
        workdir: str,
        timeout_s: float,
        max_output: int,
    ) -> ExecResult:
        """Run a command to completion or its deadline (then kill it and what it started); `NotRunning` when
        the container cannot take it."""
        ...

    def stats(self, container: str) -> dict[str, Any] | None:
        """One-shot resource stats in the engine API's shape, or None for a container that went away."""
        ...

    def images(self, label: str) -> list[ImageInfo]: ...

    def build_images(self, *, base: str | None, force: bool, progress: Progress) -> dict[str, str]:
        """Build the sandbox images on this engine (offline by default); returns tag by name."""
        ...

    def close(self) -> None: ...
