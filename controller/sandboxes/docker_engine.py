"""The Docker engine behind `Engine`: docker-py, with its errors translated once, here, keeping their cause.

A client per engine is made on first use (an engine that is away fails there, clearly): `unix://` for the local
socket, `ssh://` through paramiko, `tcp://`. Connection failures become `EngineUnavailable` naming the host and what
to do; refusals of parameters become `Invalid`; the engine's own failures `EngineError`.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount

from controller.errors import Conflict, EngineError, EngineUnavailable, ImageMissing, Invalid
from controller.models import ExecResult
from controller.sandboxes import images as image_builder
from controller.sandboxes.engine import (
    ContainerInfo,
    ContainerMissing,
    ContainerState,
    EngineFacts,
    ImageInfo,
    NotRunning,
    Progress,
    VolumeInfo,
)
from controller.sandboxes.spec import EXEC_MARKER, REAP

T = TypeVar("T")
TIMED_OUT_EXIT = 124
_UNREACHABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
    OSError,
)


@dataclass
class DockerEngine:
    name: str
    url: str
    timeout_s: float = 60.0
    _client: Any = field(default=None, repr=False)
    _facts: EngineFacts | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_local(self) -> bool:
        return self.url.startswith("unix://")

    @property
    def client(self) -> Any:
        """The docker-py client, made on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.DockerClient(
                        base_url=self.url, timeout=int(self.timeout_s), max_pool_size=32, use_ssh_client=False
                    )
                except docker.errors.DockerException as e:
                    raise EngineUnavailable(self.name, self.url, _cause(e)) from e
            return self._client

    @contextmanager
    def _calls(self, container: str | None = None) -> Iterator[None]:
        """Translate what docker-py raises inside the block (see the module's docstring)."""
        try:
            yield
        except docker.errors.NotFound as e:
            if container is not None:
                raise ContainerMissing(container) from e
            raise EngineError(
                f"the Docker engine of host {self.name!r} lost track of something: {e.explanation}"
            ) from e
        except docker.errors.APIError as e:
            if e.is_client_error():
                raise Invalid(f"the Docker engine refused this: {e.explanation}") from e
            raise EngineError(f"the Docker engine failed: {e.explanation}") from e
        except requests.exceptions.JSONDecodeError as e:  # a container stopping mid-request: an empty body
            raise EngineError(f"the Docker engine gave an empty answer: {e}") from e
        except docker.errors.DockerException as e:
            raise EngineUnavailable(self.name, self.url, _cause(e)) from e
        except _UNREACHABLE as e:
            raise EngineUnavailable(self.name, self.url, _cause(e)) from e

    def _call(self, fn: Callable[[Any], T], container: str | None = None) -> T:
        with self._calls(container):
            return fn(self.client)

    def facts(self) -> EngineFacts:
        if self._facts is None:
            info = self._call(lambda c: c.info())
            version = self._call(lambda c: c.version())
            self._facts = EngineFacts(
                ncpu=int(info.get("NCPU") or 1),
                mem_bytes=int(info.get("MemTotal") or 0),
                runtimes=frozenset((info.get("Runtimes") or {}).keys()),
                api_version=str(version.get("ApiVersion", "")),
            )
        return self._facts

    def ping(self) -> None:
        self._call(lambda c: c.ping())

    def image_id(self, image: str) -> str:
        with self._calls():
            try:
                return str(self.client.images.get(image).id)
            except docker.errors.ImageNotFound as e:
                raise ImageMissing(image, self.name) from e
            except docker.errors.APIError as e:
                raise Invalid(f"image {image!r} cannot be used: {e.explanation}") from e

    def run_to_end(self, spec: Mapping[str, Any], timeout_s: float) -> int:
        with self._calls():
            container = self.client.containers.create(**_create_args(spec))
            try:
                container.start()
                return int(container.wait(timeout=timeout_s).get("StatusCode", -1))
            finally:
                container.remove(force=True)

    def create_volume(
        self, name: str, labels: Mapping[str, str], driver_opts: Mapping[str, str] | None = None
    ) -> str | None:
        opts = dict(driver_opts or {})
        volume = self._call(lambda c: c.volumes.create(name=name, labels=dict(labels), driver_opts=opts or None))
        mountpoint = volume.attrs.get("Mountpoint")
        return str(mountpoint) if mountpoint else None

    def create_container(self, spec: Mapping[str, Any]) -> str:
        with self._calls():
            try:
                return str(self.client.containers.create(**_create_args(spec)).id)
            except docker.errors.APIError as e:
                if "not a directory" in str(e.explanation):  # the image has a file where /workspace goes
                    raise Invalid(f"image {spec['image']!r} cannot host a sandbox: {e.explanation}") from e
                raise

    def start(self, container: str) -> None:
        self._call(lambda c: c.api.start(container), container)

    def state(self, container: str) -> ContainerState | None:
        try:
            state = self._call(lambda c: c.api.inspect_container(container)["State"], container)
        except ContainerMissing:
            return None
        return ContainerState(str(state.get("Status")), state.get("ExitCode"))

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        found = self._call(lambda c: c.api.containers(all=True, filters={"label": _label_filter(labels)}))
        return [
            ContainerInfo(
                id=item["Id"],
                labels=item.get("Labels") or {},
                state=ContainerState(str(item.get("State")), _exit_code(item)),
                created=datetime.fromtimestamp(int(item.get("Created") or 0), UTC),
            )
            for item in found
        ]

    def volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]:
        found = self._call(lambda c: c.api.volumes(filters={"label": _label_filter(labels)})).get("Volumes") or []
        return [
            VolumeInfo(
                name=str(v["Name"]),
                labels=v.get("Labels") or {},
                created=_parse_time(v.get("CreatedAt")),
                folder=_volume_folder(v),
            )
            for v in found
        ]

    def remove_container(self, container: str) -> None:
        try:
            self._call(lambda c: c.api.remove_container(container, force=True, v=False), container)
        except ContainerMissing:
            pass

    def remove_volume(self, name: str) -> None:
        with self._calls():
            try:
                self.client.api.remove_volume(name, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
                raise Conflict(f"volume {name} is still in use: {e.explanation}") from e

    def stop(self, container: str, timeout_s: float) -> None:
        self._call(lambda c: c.api.stop(container, timeout=int(timeout_s)), container)

    def pause(self, container: str) -> None:
        self._call(lambda c: c.api.pause(container), container)

    def unpause(self, container: str) -> None:
        self._call(lambda c: c.api.unpause(container), container)

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
        with self._calls(container):
            try:
                return _run_exec(
                    self.client.api,
                    container,
                    command,
                    env=dict(env),
                    workdir=workdir,
                    timeout_s=timeout_s,
                    max_output=max_output,
                    can_kill_on_host=self.is_local,
                )
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
                raise NotRunning(container, str(e.explanation)) from e

    def stats(self, container: str) -> dict[str, Any] | None:
        with self._calls():
            try:
                return dict(self.client.api.stats(container, stream=False, one_shot=True))
            except (docker.errors.NotFound, ValueError):  # removed, or stopping since it was listed (empty reply)
                return None

    def images(self, label: str) -> list[ImageInfo]:
        found = self._call(lambda c: c.api.images(filters={"label": label}))
        return [
            ImageInfo(id=i["Id"], tags=tuple(i.get("RepoTags") or ()), size=i.get("Size"), created=i.get("Created"))
            for i in found
        ]

    def build_images(self, *, base: str | None, force: bool, progress: Progress) -> dict[str, str]:
        return image_builder.build_images(self.client, base=base, force=force, progress=progress)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _create_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """docker-py's keyword arguments for a spec: its mount and log types instead of plain data."""
    args = dict(spec)
    if "mounts" in args:
        args["mounts"] = [Mount(m.target, m.source, type=m.type, read_only=m.read_only) for m in args["mounts"]]
    if "log_config" in args:
        args["log_config"] = LogConfig(**args["log_config"])
    return args


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


def _exit_code(item: dict[str, Any]) -> int | None:
    status = str(item.get("Status", ""))
    if status.startswith("Exited (") and ")" in status:
        try:
            return int(status[len("Exited (") : status.index(")")])
        except ValueError:
            return None
    return None


def _parse_time(text: str | None) -> datetime | None:
    """The engine's RFC 3339 times (`2026-12-03T12:30:01Z`, or with an offset); None when absent or odd."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _volume_folder(volume: Mapping[str, Any]) -> str | None:
    """A local bind volume's files are in the folder it binds (mounted at its mount point only while in use);
    any other volume's are at its mount point."""
    options = volume.get("Options") or {}
    if volume.get("Driver") == "local" and "bind" in str(options.get("o", "")).split(",") and options.get("device"):
        return str(options["device"])
    return str(volume["Mountpoint"]) if volume.get("Mountpoint") else None


def _cause(error: BaseException) -> str:
    text = str(error)
    if "No such file or directory" in text or "FileNotFoundError" in text:
        return "its socket does not exist"
    if "Connection refused" in text:
        return "connection refused"
    if "Permission denied" in text:
        return "permission denied on its socket"
    return text.splitlines()[0][:200] if text else type(error).__name__


# --- exec: a deadline, a cap on output, and a kill of the whole process tree ----------------------------------


@dataclass
class _Capture:
    limit: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, out: bytes | None, err: bytes | None) -> None:
        for chunk, sink in ((out, self.stdout), (err, self.stderr)):
            if not chunk:
                continue
            room = self.limit - len(self.stdout) - len(self.stderr)
            if room <= 0:
                self.truncated = True
                continue
            sink.extend(chunk[:room])
            self.truncated |= len(chunk) > room


def _run_exec(
    api: Any,
    container: str,
    command: list[str],
    *,
    env: dict[str, str],
    workdir: str,
    timeout_s: float,
    max_output: int,
    can_kill_on_host: bool,
) -> ExecResult:
    """Run `command` to completion or to its deadline; on the deadline kill it and everything it started."""
    started = time.perf_counter()
    marker = secrets.token_hex(8)
    env = {**env, EXEC_MARKER: marker}
    exec_id = api.exec_create(container, command, environment=env, workdir=workdir)["Id"]
    capture = _Capture(max_output)
    done = threading.Event()

    def pump() -> None:
        try:
            for out, err in api.exec_start(exec_id, stream=True, demux=True):
                capture.add(out, err)
        finally:
            done.set()

    threading.Thread(target=pump, name=f"exec-{exec_id[:8]}", daemon=True).start()
    timed_out = not done.wait(timeout_s)
    if timed_out:
        _kill(api, container, exec_id, marker, can_kill_on_host)
        done.wait(10)
    exit_code = api.exec_inspect(exec_id).get("ExitCode")
    return ExecResult(
        exit_code=TIMED_OUT_EXIT if timed_out else (exit_code if exit_code is not None else -1),
        stdout=capture.stdout.decode(errors="replace"),
        stderr=capture.stderr.decode(errors="replace"),
        timed_out=timed_out,
        truncated=capture.truncated,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _kill(api: Any, container: str, exec_id: str, marker: str, can_kill_on_host: bool) -> None:
    """Kill an exec's processes from inside the sandbox (agent_runtime.reap: works under runc and gVisor, on any
    host); when that cannot start (a sandbox out of pids, say) and the engine is this machine's, from its /proc."""
    try:
        reaper = api.exec_create(container, [*REAP, marker])["Id"]
        api.exec_start(reaper)
        if api.exec_inspect(reaper).get("ExitCode") == 0:
            return
    except docker.errors.APIError:
        pass
    pid = int(api.exec_inspect(exec_id).get("Pid") or 0)
    if pid <= 0 or not can_kill_on_host:
        return
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (the exec's host pid is known; its children are not)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            queue.extend(children)
    return found
