"""Take a git repository out of an agent's workspace without running or trusting anything in it.

The workspace is written by the agent, and the controller reads it as root on its own machine. Git run on that
repository would honour its config and hooks (core.fsmonitor, core.hooksPath, core.sshCommand, credential
helpers: each runs a program), and following its symbolic links, `objects/info/alternates` or a `.git` file would
read other repositories of this machine. So the controller copies only what a push needs, the object database
(without alternates) and the refs, as regular files through directory descriptors opened without following links
(a link swapped in meanwhile fails to open), into a bare repository it made itself with no template, no hooks and
its own config. Git then runs on that copy only.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from controller.errors import Invalid

# What a push reads of a repository; nothing else is copied (no config, hooks, info/, HEAD, worktrees).
COPIED = ("objects", "refs", "packed-refs", "shallow")
# Pointers to other object stores, and caches git can do without (so crafted ones are not even parsed).
SKIPPED = frozenset(
    {
        "objects/info/alternates",
        "objects/info/http-alternates",
        "objects/info/commit-graph",
        "objects/info/commit-graphs",
        "objects/pack/multi-pack-index",
    }
)
SKIPPED_SUFFIXES = (".bitmap", ".rev", ".lock")
MAX_DEPTH = 12
MAX_FILES = 200_000
MAX_BYTES = 8 << 30
CHUNK = 1 << 20
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class Budget:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > MAX_FILES or self.bytes > MAX_BYTES:
            raise Invalid(
                f"the workspace repository is too large to push through the controller (over {MAX_FILES} files "
                f"or {MAX_BYTES >> 30} GiB); run `git gc` in it first"
            )


def quarantine(workspace: Path, path: str, dest: Path, git: list[str], env: dict[str, str]) -> Budget:
    """Copy the repository at `path` (relative to the workspace) into a new bare repository at `dest`, made
    with `git` (the command line to run git with) and `env`. Returns what was copied and skipped."""
    root = os.open(workspace, DIR_FLAGS)
    try:
        gitdir = _open_gitdir(root, path)
    finally:
        os.close(root)
    try:
        config = _read_small(gitdir, "config")
        _init(dest, git, env, _object_format(config, dest, git, env))
        budget = Budget()
        for name in COPIED:
            _copy_entry(gitdir, name, dest, name, budget, depth=0)
        return budget
    finally:
        os.close(gitdir)


def _open_gitdir(root: int, path: str) -> int:
    """The repository's git directory: `<path>/.git`, or `<path>` itself when that is a bare repository."""
    where = PurePosixPath(path or ".")
    if where.is_absolute() or ".." in where.parts:
        raise Invalid(f"'path' must be a folder inside the workspace, relative to it (no '..'); got {path[:200]!r}")
    here = os.dup(root)
    try:
        for part in where.parts:
            if part == ".":
                continue
            child = _open_folder(here, part)
            if child is None:
                raise Invalid(f"{path[:200]!r} is not a folder of the workspace (missing, a file, or a symbolic link)")
            os.close(here)
            here = child
        gitdir = _open_folder(here, ".git")
        if gitdir is not None:
            return gitdir
        if _exists(here, ".git"):
            raise Invalid(
                "the workspace's .git is a symbolic link or a file (a linked worktree or submodule); the controller "
                "only pushes from a repository whose .git is a folder in the workspace"
            )
        if {"objects", "refs", "HEAD"} <= set(os.listdir(here)):
            return os.dup(here)
        raise Invalid(
            f"there is no git repository at {path or '.'!r} in the workspace (no .git folder); run `git init` "
            f"there, or pass 'path' to the folder that holds one"
        )
    finally:
        os.close(here)


def _open_folder(fd: int, name: str) -> int | None:
    """The folder `name` below `fd`, opened without following a link; None if it is not a folder."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise


def _exists(fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _read_small(fd: int, name: str, limit: int = 1 << 16) -> bytes:
    try:
        file = os.open(name, FILE_FLAGS, dir_fd=fd)
    except OSError:
        return b""
    try:
        return os.read(file, limit) if stat.S_ISREG(os.fstat(file).st_mode) else b""
    finally:
        os.close(file)


def _object_format(config: bytes, dest: Path, git: list[str], env: dict[str, str]) -> str:
    """sha1 or sha256, as the agent's config says; read by `git config --file`, which runs nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    copy = dest.parent / "agent.config"
    copy.write_bytes(config)
    done = subprocess.run(
        [*git, "config", "--file", str(copy), "--get", "extensions.objectformat"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    found = done.stdout.strip().lower() or "sha1"
    if found not in ("sha1", "sha256"):
        raise Invalid(f"the workspace repository uses object format {found[:20]!r}, which git here does not know")
    return found


def _init(dest: Path, git: list[str], env: dict[str, str], object_format: str) -> None:
    argv = [*git, "init", "--quiet", "--bare", "--template=", f"--object-format={object_format}", str(dest)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise Invalid(f"could not make a repository to push from: {done.stderr.strip()[-300:]}")


def _copy_entry(parent: int, name: str, dest_parent: Path, relative: str, budget: Budget, *, depth: int) -> None:
    """Copy a regular file or a folder (recursively) below `parent`; anything else is skipped and noted."""
    if relative in SKIPPED or relative.endswith(SKIPPED_SUFFIXES):
        budget.skipped.append(relative)
        return
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symbolic link: never followed
            budget.skipped.append(relative)
            return
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            _copy_folder(fd, dest_parent / name, relative, budget, depth=depth)
        elif stat.S_ISREG(mode):
            _copy_file(fd, dest_parent / name, budget)
        else:  # a FIFO, socket or device
            budget.skipped.append(relative)
    finally:
        os.close(fd)


def _copy_folder(fd: int, dest: Path, relative: str, budget: Budget, *, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise Invalid(f"the workspace repository nests folders too deep at {relative!r}")
    budget.take(0)  # folders count as files: a million empty ones would take as long
    dest.mkdir(mode=0o700, exist_ok=True)
    for name in sorted(os.listdir(fd)):
        _copy_entry(fd, name, dest, f"{relative}/{name}", budget, depth=depth + 1)


def _copy_file(fd: int, dest: Path, budget: Budget) -> None:
    """Copy as many bytes as the file had when opened (an agent appending meanwhile adds nothing)."""
    left = os.fstat(fd).st_size
    budget.take(left)
    with open(dest, "wb") as out:
        while left > 0 and (chunk := os.read(fd, min(CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)
