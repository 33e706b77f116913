"""The engine side of a sandbox: is this image usable, make the workspace and the hardened container with its
credentials, take them all away again. No database here: the flows decide when, the rows say what.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import agent_runtime
from controller.errors import Invalid
from controller.models import Sandbox
from controller.sandboxes.credentials import Credentials
from controller.sandboxes.engine import Engine
from controller.sandboxes.spec import (
    PROBE_TOO_OLD,
    HostPaths,
    SandboxShape,
    container_spec,
    engine_name,
    labels,
    probe_spec,
)
from controller.sandboxes.workspaces import WorkspaceStore

PROBE_TIMEOUT_S = 60.0


class Provisioner:
    """Makes and unmakes sandboxes on engines, for one controller instance."""

    def __init__(
        self, *, instance: str, uid: int, credentials: Credentials, gateway_dir: Path, workspaces: WorkspaceStore
    ) -> None:
        self.instance = instance
        self.uid = uid
        self.credentials = credentials
        self.workspaces = workspaces
        self._gateway_dir = gateway_dir
        self._runtime_package = Path(agent_runtime.__file__).resolve().parent
        self._verified: set[tuple[str, str]] = set()

    def require_image(self, engine: Engine, image: str) -> None:
        """The image must exist on the engine and be able to host the runtime (probed once per image id)."""
        image_id = engine.image_id(image)
        if (engine.name, image_id) in self._verified:
            return
        code = engine.run_to_end(probe_spec(image, instance=self.instance, uid=self.uid), PROBE_TIMEOUT_S)
        if code == PROBE_TOO_OLD:
            raise Invalid(f"image {image!r} cannot host a sandbox: its python3 is older than 3.9")
        if code != 0:
            raise Invalid(
                f"image {image!r} cannot host a sandbox: it has no working python3 on its PATH "
                f"(fleetgate's runtime needs python3 >= 3.9; the check exited {code})"
            )
        self._verified.add((engine.name, image_id))

    def provision(
        self, engine: Engine, sandbox: Sandbox, *, template: str | None, credentials: dict[str, Any] | None
    ) -> None:
        """Credentials folder (and file, unless a pool entry waits for them), workspace volume, hardened container,
        started; sets `sandbox.container_id`. Whatever fails, the caller calls `destroy`."""
        self.credentials.prepare(sandbox.id)
        if credentials is not None:
            self.credentials.write(sandbox.id, credentials)
        shape = SandboxShape(sandbox.id, sandbox.image, sandbox.cpus, sandbox.memory_mb, sandbox.pids, template)
        paths = HostPaths(self._runtime_package, self._gateway_dir, self.credentials.folder(sandbox.id))
        spec = container_spec(
            shape, instance=self.instance, uid=self.uid, paths=paths, runtime=engine.facts().sandbox_runtime
        )
        mountpoint = engine.create_volume(
            str(sandbox.volume), labels(self.instance, sandbox.id, "workspace"), self._workspace(engine, sandbox)
        )
        sandbox.container_id = engine.create_container(spec)
        if engine.is_local:
            own_workspace(mountpoint, self.uid)
        engine.start(sandbox.container_id)

    def _workspace(self, engine: Engine, sandbox: Sandbox) -> dict[str, str] | None:
        """A size-limited workspace to bind as the volume, where this host can make one (see workspaces.py)."""
        if not (engine.is_local and sandbox.disk_mb) or self.workspaces.unavailable() is not None:
            return None
        folder = self.workspaces.make(sandbox.id, sandbox.disk_mb)
        return {"type": "none", "o": "bind", "device": str(folder)}

    def destroy(self, engine: Engine, sandbox: Sandbox, *, keep_volume: bool = False) -> None:
        """Remove the container, the volume and its workspace (unless kept) and the credentials; missing pieces
        are fine."""
        engine.remove_container(sandbox.container_id or engine_name(self.instance, sandbox.id))
        if sandbox.volume and not keep_volume:
            engine.remove_volume(sandbox.volume)
            if engine.is_local:
                self.workspaces.remove(sandbox.id)
        self.credentials.remove(sandbox.id)


def own_workspace(mountpoint: str | None, uid: int) -> None:
    """Images without a /workspace of their own leave the new volume root-owned: hand it to the user."""
    if not mountpoint or os.geteuid() != 0 or not os.path.isdir(mountpoint):
        return
    if os.stat(mountpoint).st_uid != uid:
        os.chown(mountpoint, uid, uid)
