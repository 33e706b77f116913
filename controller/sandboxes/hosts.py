"""The engines this controller drives, by host name: `local` (the unix socket) always, others as admins add them.

Engines are made by a `connect(name, url)` function (docker-py's `DockerEngine` unless told otherwise, so tests can
hand in in-memory ones) and kept; a host registered by another process is looked up on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from controller.errors import HostNotFound, Invalid
from controller.sandboxes.docker_engine import DockerEngine
from controller.sandboxes.engine import Engine

LOCAL = "local"
Connect = Callable[[str, str], Engine]


def validate_host_url(url: str) -> str:
    if not (url.startswith("unix://") or url.startswith("ssh://") or url.startswith("tcp://")):
        raise Invalid(f"host url {url!r} must start with unix://, ssh:// or tcp://")
    return url


def docker_engines(timeout_s: float = 60.0) -> Connect:
    def connect(name: str, url: str) -> Engine:
        return DockerEngine(name, url, timeout_s)

    return connect


class Hosts:
    """Engines by host name; made lazily and kept."""

    def __init__(
        self,
        local_url: str,
        *,
        connect: Connect | None = None,
        lookup: Callable[[str], str | None] | None = None,
        known: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        self._connect = connect or docker_engines()
        self._engines: dict[str, Engine] = {LOCAL: self._connect(LOCAL, local_url)}
        self._lock = threading.Lock()
        self._lookup = lookup
        self._known = known

    def add(self, name: str, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(name)
            if engine is None or engine.url != url:
                engine = self._connect(name, validate_host_url(url))
                self._engines[name] = engine
            return engine

    def remove(self, name: str) -> None:
        with self._lock:
            engine = self._engines.pop(name, None)
        if engine is not None:
            engine.close()

    def get(self, name: str) -> Engine:
        """The engine of host `name`; `HostNotFound` when no such host is registered."""
        engine = self._engines.get(name)
        if engine is None:
            url = self._lookup(name) if self._lookup else None
            if url is None:
                raise HostNotFound(name)
            engine = self.add(name, url)
        return engine

    @property
    def local(self) -> Engine:
        return self._engines[LOCAL]

    def __iter__(self) -> Iterator[Engine]:
        """Every registered engine, including those other processes added."""
        for name, url in self._known() if self._known else ():
            if name not in self._engines:
                self.add(name, url)
        return iter(list(self._engines.values()))

    def close(self) -> None:
        for engine in list(self._engines.values()):
            engine.close()
