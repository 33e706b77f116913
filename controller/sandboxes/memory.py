"""An engine that keeps containers in memory: the fast test tier's stand-in for Docker, as httpx's MockTransport is
for the network. It follows the `Engine` contract (states, labels, errors) closely enough that the flows cannot
tell, runs nothing, and lets a test script what a command prints, make a container vanish, or make one call fail.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.errors import Conflict, EngineError, FleetgateError, ImageMissing, Invalid
from controller.models import ExecResult
from controller.sandboxes.engine import (
    ContainerInfo,
    ContainerMissing,
    ContainerState,
    Engine,
    EngineFacts,
    ImageInfo,
    NotRunning,
    Progress,
    VolumeInfo,
)
from controller.sandboxes.workspaces import Usage, WorkspaceStore

ExecHandler = Callable[["MemoryContainer", list[str]], ExecResult]


@dataclass
class MemoryContainer:
    id: str
    spec: Mapping[str, Any]
    status: str = "created"
    exit_code: int | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def labels(self) -> Mapping[str, str]:
        return dict(self.spec.get("labels") or {})

    @property
    def name(self) -> str | None:
        name = self.spec.get("name")
        return str(name) if name else None


def echo_exit_zero(container: MemoryContainer, command: list[str]) -> ExecResult:
    """The default exec: every command succeeds and prints its own words (as `echo` would)."""
    return ExecResult(exit_code=0, stdout=" ".join(command[1:]) + "\n", stderr="", duration_ms=0.0)


@dataclass
class MemoryEngine:
    """One host's worth of containers, volumes and images, in dictionaries."""

    name: str = "local"
    url: str = "memory://local"
    local: bool = True
    facts_: EngineFacts = field(
        default_factory=lambda: EngineFacts(ncpu=2, mem_bytes=8 << 30, runtimes=frozenset({"runc"}), api_version="1.41")
    )
    image_ids: dict[str, str] = field(default_factory=lambda: {"fleetgate/python:latest": "sha256:python"})
    probe_exit: int = 0
    broken_runtimes: dict[str, str] = field(default_factory=dict)  # runtime -> the engine's error when used
    on_exec: ExecHandler = echo_exit_zero
    containers_: dict[str, MemoryContainer] = field(default_factory=dict)
    volumes_: dict[str, VolumeInfo] = field(default_factory=dict)
    volume_opts: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _failures: dict[str, FleetgateError] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what tests use to shape the world ------------------------------------------------------------------

    def fail_next(self, operation: str, error: FleetgateError) -> None:
        """Make the next call of `operation` (a method name) raise `error`."""
        self._failures[operation] = error

    def vanish(self, container: str) -> None:
        """Remove a container behind the controller's back (as `docker rm -f` would)."""
        self.containers_.pop(self._find(container).id)

    def exit(self, container: str, code: int) -> None:
        """The container's main process ended with `code`."""
        found = self._find(container)
        found.status, found.exit_code = "exited", code

    def by_label(self, key: str, value: str) -> list[MemoryContainer]:
        return [c for c in self.containers_.values() if c.labels.get(key) == value]

    # --- Engine -------------------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self.local

    def facts(self) -> EngineFacts:
        self._enter("facts")
        return self.facts_

    def ping(self) -> None:
        self._enter("ping")

    def image_id(self, image: str) -> str:
        self._enter("image_id", image)
        if image not in self.image_ids:
            raise ImageMissing(image, self.name)
        return self.image_ids[image]

    def run_to_end(self, spec: Mapping[str, Any], timeout_s: float) -> int:
        self._enter("run_to_end", str(spec.get("image")))
        if str(spec.get("runtime")) in self.broken_runtimes:
            raise EngineError(self.broken_runtimes[str(spec["runtime"])])
        return self.probe_exit

    def create_volume(
        self, name: str, labels: Mapping[str, str], driver_opts: Mapping[str, str] | None = None
    ) -> str | None:
        self._enter("create_volume", name)
        if name in self.volumes_:
            raise Conflict(f"volume {name} exists")
        self.volumes_[name] = VolumeInfo(name, dict(labels), datetime.now(UTC), (driver_opts or {}).get("device"))
        self.volume_opts[name] = dict(driver_opts or {})
        return None

    def create_container(self, spec: Mapping[str, Any]) -> str:
        self._enter("create_container", str(spec.get("name")))
        if spec.get("image") not in self.image_ids:
            raise Invalid(f"the Docker engine refused this: no such image: {spec.get('image')}")
        if spec.get("name") and any(c.name == spec["name"] for c in self.containers_.values()):
            raise Invalid(f"the Docker engine refused this: the name {spec['name']} is in use")
        with self._lock:
            container = MemoryContainer(id=f"{next(self._ids):012x}" + "0" * 52, spec=dict(spec))
            self.containers_[container.id] = container
        return container.id

    def start(self, container: str) -> None:
        self._enter("start", container)
        found = self._find(container)
        found.status, found.exit_code = "running", None

    def state(self, container: str) -> ContainerState | None:
        self._enter("state", container)
        try:
            found = self._find(container)
        except ContainerMissing:
            return None
        return ContainerState(found.status, found.exit_code)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        self._enter("containers")
        return [
            ContainerInfo(c.id, c.labels, ContainerState(c.status, c.exit_code), c.created)
            for c in list(self.containers_.values())
            if all(c.labels.get(k) == v for k, v in labels.items())
        ]

    def volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]:
        self._enter("volumes")
        return [v for v in list(self.volumes_.values()) if all(v.labels.get(k) == x for k, x in labels.items())]

    def remove_container(self, container: str) -> None:
        self._enter("remove_container", container)
        try:
            self.containers_.pop(self._find(container).id)
        except ContainerMissing:
            pass

    def remove_volume(self, name: str) -> None:
        self._enter("remove_volume", name)
        if any(m.source == name for c in self.containers_.values() for m in c.spec.get("mounts", ())):
            raise Conflict(f"volume {name} is still in use")
        self.volumes_.pop(name, None)

    def stop(self, container: str, timeout_s: float) -> None:
        self._enter("stop", container)
        found = self._find(container)
        if found.status == "paused":
            raise NotRunning(container, "it is paused")
        if found.status == "running":
            found.status, found.exit_code = "exited", 143

    def pause(self, container: str) -> None:
        self._set(container, "pause", needs="running", becomes="paused")

    def unpause(self, container: str) -> None:
        self._set(container, "unpause", needs="paused", becomes="running")

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
        self._enter("exec", container)
        found = self._find(container)
        if found.status != "running":
            raise NotRunning(container, f"it is {found.status}")
        return self.on_exec(found, command)

    def stats(self, container: str) -> dict[str, Any] | None:
        self._enter("stats", container)
        try:
            found = self._find(container)
        except ContainerMissing:
            return None
        memory = int(str(found.spec.get("mem_limit", "512m")).rstrip("m")) << 20
        return {
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
            "memory_stats": {"usage": 1 << 20, "limit": memory, "stats": {}},
            "pids_stats": {"current": 1},
        }

    def images(self, label: str) -> list[ImageInfo]:
        self._enter("images")
        return [ImageInfo(id=i, tags=(tag,), size=None, created=None) for tag, i in self.image_ids.items()]

    def build_images(self, *, base: str | None, force: bool, progress: Progress) -> dict[str, str]:
        self._enter("build_images")
        progress("memory engine: nothing to build")
        return {"python": "fleetgate/python:latest"}

    def close(self) -> None:
        self._enter("close")

    # --- internals -----------------------------------------------------------------------------------------

    def _enter(self, operation: str, subject: str = "") -> None:
        self.calls.append((operation, subject))
        failure = self._failures.pop(operation, None)
        if failure is not None:
            raise failure

    def _find(self, container: str) -> MemoryContainer:
        for found in list(self.containers_.values()):
            if container in (found.id, found.name) or (len(container) >= 12 and found.id.startswith(container)):
                return found
        raise ContainerMissing(container)

    def _set(self, container: str, operation: str, *, needs: str, becomes: str) -> None:
        self._enter(operation, container)
        found = self._find(container)
        if found.status != needs:
            raise Invalid(f"the Docker engine refused this: container {container[:12]} is {found.status}")
        found.status = becomes


@dataclass
class MemoryWorkspaces:
    """Size-limited workspaces in a dict: what was asked for, and how full a test says each one is."""

    why_not: str | None = None
    made: dict[str, int] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def unavailable(self) -> str | None:
        return self.why_not

    def make(self, sandbox_id: str, size_mb: int) -> Path:
        self.made[sandbox_id] = size_mb
        return Path("/memory/workspaces") / sandbox_id

    def remove(self, sandbox_id: str) -> None:
        self.made.pop(sandbox_id, None)

    def usage(self, sandbox_id: str) -> Usage | None:
        if sandbox_id not in self.made:
            return None
        return Usage(used_mb=self.used.get(sandbox_id, 0.0), limit_mb=self.made[sandbox_id])


def _conforms(engine: MemoryEngine, workspaces: MemoryWorkspaces) -> tuple[Engine, WorkspaceStore]:
    """mypy checks here that the in-memory stand-ins keep to the whole of their protocols."""
    return engine, workspaces
