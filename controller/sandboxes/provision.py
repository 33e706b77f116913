"""The engine side of a sandbox: is this image usable, make the workspace and the hardened container with its
credentials, take them all away again. No database here: the flows decide when, the rows say what.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import agent_runtime
from controller.config import RuntimeSetting
from controller.errors import EngineError, Invalid, Unavailable
from controller.models import Sandbox
from controller.sandboxes.credentials import Credentials
from controller.sandboxes.engine import Engine
from controller.sandboxes.isolation import GVISOR, Isolation, without_probe
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
        self,
        *,
        instance: str,
        uid: int,
        credentials: Credentials,
        gateway_dir: Path,
        workspaces: WorkspaceStore,
        runtime: RuntimeSetting = "auto",
    ) -> None:
        self.instance = instance
        self.uid = uid
        self.credentials = credentials
        self.workspaces = workspaces
        self.runtime_setting = runtime
        self._gateway_dir = gateway_dir
        self._runtime_package = Path(agent_runtime.__file__).resolve().parent
        self._verified: set[tuple[str, str]] = set()
        self._isolation: dict[str, Isolation] = {}
        self._tried: dict[tuple[str, str, str | None], int] = {}  # trial exit codes isolation() just saw

    def isolation(self, engine: Engine, image: str) -> Isolation:
        """gVisor or runc for the sandboxes of `engine`, decided once: runsc must be registered and run a trial
        container of `image`. When runsc fails where runc succeeds, the engine's sandboxes fall back to runc (or,
        with FLEETGATE_SANDBOX_RUNTIME=runsc, are refused) and the reason is kept for `fleetgate status`."""
        known = self._isolation.get(engine.name)
        if known is None:
            known = without_probe(self.runtime_setting, engine.facts().runtimes, engine.name)
            if known is None:
                why = self._try(engine, image, GVISOR)
                if not why:
                    known = Isolation(GVISOR)
                elif self._try(engine, image, None):
                    return Isolation(GVISOR)  # runc fails too: the image is at fault, and require_image says so
                else:
                    known = Isolation(None, f"runsc is registered on host {engine.name!r} but failed: {why}")
            self._isolation[engine.name] = known
        if self.runtime_setting == GVISOR and not known.gvisor:
            raise Unavailable(
                f"FLEETGATE_SANDBOX_RUNTIME=runsc requires gVisor, and host {engine.name!r} cannot give it: "
                f"{known.why_not_gvisor}"
            )
        return known

    def _try(self, engine: Engine, image: str, runtime: str | None) -> str:
        """Run the probe under `runtime`; '' when python3 ran in it (whatever its version), else what went wrong."""
        spec = probe_spec(image, instance=self.instance, uid=self.uid, runtime=runtime)
        try:
            code = engine.run_to_end(spec, PROBE_TIMEOUT_S)
        except (EngineError, Invalid) as e:
            return e.message.splitlines()[0][:300] if e.message else type(e).__name__
        self._tried[(engine.name, image, runtime)] = code
        return "" if code in (0, PROBE_TOO_OLD) else f"a trial container exited {code}"

    def require_image(self, engine: Engine, image: str) -> None:
        """The image must exist on the engine and be able to host the runtime (probed once per image id)."""
        image_id = engine.image_id(image)
        if (engine.name, image_id) in self._verified:
            return
        runtime = self.isolation(engine, image).runtime
        code = self._tried.pop((engine.name, image, runtime), None)
        if code is None:
            spec = probe_spec(image, instance=self.instance, uid=self.uid, runtime=runtime)
            code = engine.run_to_end(spec, PROBE_TIMEOUT_S)
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
        runtime = self.isolation(engine, sandbox.image).runtime
        spec = container_spec(shape, instance=self.instance, uid=self.uid, paths=paths, runtime=runtime)
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

    def workspace_folder(self, engine: Engine, sandbox: Sandbox) -> Path | None:
        """Where the sandbox's workspace files are on this machine (its size-limited folder, or the engine's folder
        of the plain volume); None on an engine of another machine or when the engine has no such volume."""
        if not engine.is_local or not sandbox.volume:
            return None
        for volume in engine.volumes(labels(self.instance, sandbox.id, "workspace")):
            if volume.name == sandbox.volume and volume.folder:
                return Path(volume.folder)
        return None

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
