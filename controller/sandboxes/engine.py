"""Talking to an engine about one sandbox: is this image usable, make the container, translate refusals.

Kept apart from the lifecycle in `service.py`: these are the Docker calls, the service decides when to make them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors

from controller.errors import EngineError, ImageMissing, Invalid
from controller.models import Sandbox
from controller.sandboxes.hosts import DockerHost, engine_errors
from controller.sandboxes.spec import (
    PROBE_TOO_OLD,
    HostPaths,
    SandboxShape,
    container_spec,
    labels,
    probe_spec,
)


@contextmanager
def engine_refusals() -> Iterator[None]:
    """Turn the engine's refusals of bad parameters into Invalid, its own failures into EngineError."""
    try:
        yield
    except docker.errors.NotFound:
        raise
    except docker.errors.APIError as e:
        if e.is_client_error():
            raise Invalid(f"the Docker engine refused this: {e.explanation}") from e
        raise EngineError(f"the Docker engine failed: {e.explanation}") from e


class ImageGate:
    """Checks that an image exists on a host and can host the runtime (python3 >= 3.9), once per image id."""

    def __init__(self, instance: str, uid: int) -> None:
        self.instance = instance
        self.uid = uid
        self._verified: set[tuple[str, str]] = set()

    def require(self, host: DockerHost, image: str) -> None:
        try:
            image_id = str(host.call(lambda c: c.images.get(image)).id)
        except docker.errors.ImageNotFound as e:
            raise ImageMissing(image, host.name) from e
        except docker.errors.APIError as e:
            raise Invalid(f"image {image!r} cannot be used: {e.explanation}") from e
        if (host.name, image_id) not in self._verified:
            self._probe(host, image)
            self._verified.add((host.name, image_id))

    def _probe(self, host: DockerHost, image: str) -> None:
        spec = probe_spec(image, instance=self.instance, uid=self.uid)
        with engine_errors(host), engine_refusals():
            container = host.client.containers.create(**spec)
            try:
                container.start()
                code = int(container.wait(timeout=60).get("StatusCode", -1))
            finally:
                container.remove(force=True)
        if code == PROBE_TOO_OLD:
            raise Invalid(f"image {image!r} cannot host a sandbox: its python3 is older than 3.9")
        if code != 0:
            raise Invalid(
                f"image {image!r} cannot host a sandbox: it has no working python3 on its PATH "
                f"(fleetgate's runtime needs python3 >= 3.9; the check exited {code})"
            )


def provision(
    host: DockerHost, sandbox: Sandbox, template: str | None, *, instance: str, uid: int, paths: HostPaths
) -> None:
    """Create the workspace volume and the hardened container, and start it; sets `sandbox.container_id`."""
    shape = SandboxShape(sandbox.id, sandbox.image, sandbox.cpus, sandbox.memory_mb, sandbox.pids, template)
    spec = container_spec(shape, instance=instance, uid=uid, paths=paths, runtime=host.facts.sandbox_runtime)
    with engine_errors(host), engine_refusals():
        volume = host.client.volumes.create(name=sandbox.volume, labels=labels(instance, sandbox.id, "workspace"))
        try:
            container = host.client.containers.create(**spec)
        except docker.errors.APIError as e:
            if "not a directory" in str(e.explanation):  # the image has a file where /workspace goes
                raise Invalid(f"image {sandbox.image!r} cannot host a sandbox: {e.explanation}") from e
            raise
        sandbox.container_id = container.id
        if host.is_local:
            own_workspace(volume.attrs.get("Mountpoint"), uid)
        container.start()


def own_workspace(mountpoint: str | None, uid: int) -> None:
    """Images without a /workspace of their own leave the new volume root-owned: hand it to the user."""
    if not mountpoint or os.geteuid() != 0 or not os.path.isdir(mountpoint):
        return
    if os.stat(mountpoint).st_uid != uid:
        os.chown(mountpoint, uid, uid)
