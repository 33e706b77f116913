"""Workspaces with a size the kernel enforces: each is a file system of its own, of exactly that size.

A sparse file `<home>/workspaces/<sandbox id>.img` holds an ext4 file system (made in a few milliseconds: no
journal, inode tables initialised lazily, owned by the sandbox's user from the start), loop-mounted at
`<home>/workspaces/<sandbox id>/` and bound into the sandbox as its workspace volume. A write past the size fails
with "No space left on device" in the sandbox, and nothing polls. The file takes disk space only as it is written.

Project quotas would do the same on one file system, but they need a kernel built with quota support, which this
kind of machine lacks; a file system per workspace needs only loop devices, which every Linux has. Without root
or without them (`LoopWorkspaces.unavailable` says why), workspaces are plain volumes and `fleetgate status`
says so. A workspace has no journal: after a host crash it may need `fsck.ext4 -p <image>` before it mounts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from controller.errors import EngineError

_TOOLS = ("mkfs.ext4", "mount", "umount", "losetup")


@dataclass(frozen=True)
class Usage:
    used_mb: float
    limit_mb: int


class WorkspaceStore(Protocol):
    """Where size-limited workspaces come from (the flows and the provisioner ask this, never the tools)."""

    def unavailable(self) -> str | None:
        """Why workspaces cannot be size-limited on this host, or None when they can."""
        ...

    def make(self, sandbox_id: str, size_mb: int) -> Path:
        """A new, mounted workspace of `size_mb`; the folder to bind into the sandbox."""
        ...

    def remove(self, sandbox_id: str) -> None:
        """Unmount and delete a workspace; a missing one is fine."""
        ...

    def usage(self, sandbox_id: str) -> Usage | None:
        """How full a mounted workspace is; None when there is none."""
        ...


class LoopWorkspaces:
    def __init__(self, root: Path, uid: int) -> None:
        self.root = root
        self.uid = uid
        self._why_not: tuple[str | None] | None = None

    def unavailable(self) -> str | None:
        if self._why_not is None:  # asked on every create; the answer does not change while the process runs
            self._why_not = (self._check(),)
        return self._why_not[0]

    def _check(self) -> str | None:
        if os.geteuid() != 0:
            return "the controller does not run as root, which mounting a workspace needs"
        missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
        if missing:
            return f"{', '.join(missing)} not found (apt-get install e2fsprogs mount)"
        if not Path("/dev/loop-control").exists():
            return "this kernel has no loop devices (/dev/loop-control)"
        return None

    def _image(self, sandbox_id: str) -> Path:
        return self.root / f"{sandbox_id}.img"

    def folder(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id

    def make(self, sandbox_id: str, size_mb: int) -> Path:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        image, folder = self._image(sandbox_id), self.folder(sandbox_id)
        with open(image, "wb") as sparse:
            sparse.truncate(size_mb << 20)
        folder.mkdir(mode=0o700, exist_ok=True)
        owner = f"root_owner={self.uid}:{self.uid},lazy_itable_init=1"
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", owner, str(image))
        _run("mount", "-o", "loop,nodev,nosuid", str(image), str(folder))
        return folder

    def remove(self, sandbox_id: str) -> None:
        folder = self.folder(sandbox_id)
        if os.path.ismount(folder):
            try:
                _run("umount", str(folder))
            except EngineError:  # still held by a container on its way out: detach now, freed when released
                _run("umount", "-l", str(folder))
        with contextlib.suppress(FileNotFoundError):
            self._image(sandbox_id).unlink()
        with contextlib.suppress(FileNotFoundError, OSError):
            folder.rmdir()

    def usage(self, sandbox_id: str) -> Usage | None:
        folder = self.folder(sandbox_id)
        if not os.path.ismount(folder):
            return None
        stat = os.statvfs(folder)
        return Usage(
            used_mb=round((stat.f_blocks - stat.f_bfree) * stat.f_frsize / (1 << 20), 1),
            limit_mb=self._image(sandbox_id).stat().st_size >> 20,  # the size asked for; the file system's own
        )  # bookkeeping takes a few percent of it, so a workspace is full a little before `used` reaches it


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise EngineError(f"workspace: {argv[0]} failed: {detail[-1] if detail else done.returncode}")
