"""Docker hosts: one client per engine, `local` (the unix socket) by default, `ssh://` hosts through paramiko.

Every call into docker-py that can fail because an engine is away goes through `engine_call`, which turns
connection errors into `EngineUnavailable` with the host's name and what to do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from controller.errors import EngineUnavailable, HostNotFound, Invalid

LOCAL = "local"
T = TypeVar("T")

_UNREACHABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class EngineFacts:
    """What fleetgate needs to know about an engine to validate and harden a sandbox."""

    ncpu: int
    mem_bytes: int
    runtimes: frozenset[str]
    api_version: str

    @property
    def sandbox_runtime(self) -> str | None:
        """gVisor when the engine has it; the engine's default (runc) otherwise."""
        return "runsc" if "runsc" in self.runtimes else None


@dataclass
class DockerHost:
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
        """The docker-py client, made on first use (an unreachable engine fails here, clearly)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        try:
            return docker.DockerClient(
                base_url=self.url, timeout=int(self.timeout_s), max_pool_size=32, use_ssh_client=False
            )
        except docker.errors.DockerException as e:
            raise EngineUnavailable(self.name, self.url, _cause(e)) from e

    @property
    def facts(self) -> EngineFacts:
        if self._facts is None:
            info = self.call(lambda c: c.info())
            version = self.call(lambda c: c.version())
            self._facts = EngineFacts(
                ncpu=int(info.get("NCPU") or 1),
                mem_bytes=int(info.get("MemTotal") or 0),
                runtimes=frozenset((info.get("Runtimes") or {}).keys()),
                api_version=str(version.get("ApiVersion", "")),
            )
        return self._facts

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)`, translating an unreachable engine into EngineUnavailable."""
        with engine_errors(self):
            return fn(self.client)

    def ping(self) -> None:
        self.call(lambda c: c.ping())

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@contextmanager
def engine_errors(host: DockerHost) -> Iterator[None]:
    try:
        yield
    except (docker.errors.APIError, requests.exceptions.JSONDecodeError):
        raise  # the engine answered: with an error, or (a container stopping mid-request) with an empty body
    except docker.errors.DockerException as e:
        raise EngineUnavailable(host.name, host.url, _cause(e)) from e
    except _UNREACHABLE as e:
        raise EngineUnavailable(host.name, host.url, _cause(e)) from e


def _cause(error: BaseException) -> str:
    text = str(error)
    if "No such file or directory" in text or "FileNotFoundError" in text:
        return "its socket does not exist"
    if "Connection refused" in text:
        return "connection refused"
    if "Permission denied" in text:
        return "permission denied on its socket"
    return text.splitlines()[0][:200] if text else type(error).__name__


def validate_host_url(url: str) -> str:
    if not (url.startswith("unix://") or url.startswith("ssh://") or url.startswith("tcp://")):
        raise Invalid(f"host url {url!r} must start with unix://, ssh:// or tcp://")
    return url


class DockerHosts:
    """The engines this controller drives, by name; clients are made lazily and kept."""

    def __init__(
        self, local_url: str, timeout_s: float = 60.0, lookup: Callable[[str], str | None] | None = None
    ) -> None:
        self._timeout_s = timeout_s
        self._hosts: dict[str, DockerHost] = {LOCAL: DockerHost(LOCAL, local_url, timeout_s)}
        self._lock = threading.Lock()
        self._lookup = lookup

    def add(self, name: str, url: str) -> DockerHost:
        with self._lock:
            host = self._hosts.get(name)
            if host is None or host.url != url:
                host = DockerHost(name, validate_host_url(url), self._timeout_s)
                self._hosts[name] = host
            return host

    def remove(self, name: str) -> None:
        with self._lock:
            host = self._hosts.pop(name, None)
        if host is not None:
            host.close()

    def get(self, name: str) -> DockerHost:
        """The host called `name`; one registered by another process is looked up on first use."""
        host = self._hosts.get(name)
        if host is None:
            url = self._lookup(name) if self._lookup else None
            if url is None:
                raise HostNotFound(name)
            host = self.add(name, url)
        return host

    @property
    def local(self) -> DockerHost:
        return self._hosts[LOCAL]

    def __iter__(self) -> Iterator[DockerHost]:
        return iter(list(self._hosts.values()))

    def close(self) -> None:
        for host in self:
            host.close()
