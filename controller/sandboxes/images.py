"""Building the sandbox images without a registry.

`fleetgate/base` is a Debian root file system made by debootstrap from this machine's own apt sources, then
`docker import`ed. `fleetgate/python` is built on it from `sandbox_images/python/Dockerfile`. Both are tagged with a
digest of their inputs, so building again when nothing changed does nothing. Passing `base="python:3.12-slim"`
(or any image) skips debootstrap and builds the python image on that one, pulling it if a registry answers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import docker.utils

from controller.errors import FleetgateError
from sandbox_images import ROOT as IMAGES_ROOT

BASE_REPO = "fleetgate/base"
PYTHON_REPO = "fleetgate/python"
Progress = Callable[[str], None]


class ImageBuildFailed(FleetgateError):
    status_code = 500


def host_apt_source(root: Path = Path("/")) -> tuple[str, str]:
    """The (mirror URI, suite) this machine installs its own packages from."""
    suite = _os_release(root).get("VERSION_CODENAME", "")
    for uri, suites in _apt_entries(root):
        if not uri.startswith(("http://", "https://", "file:/")) or "security" in uri:
            continue
        plain = [s for s in suites if "-" not in s]
        if plain:
            return uri, suite or plain[0]
    raise ImageBuildFailed(
        "no usable apt source on this machine (looked in /etc/apt/sources.list and sources.list.d); "
        "debootstrap needs one, or pass --base IMAGE to build on an image from a registry"
    )


def _os_release(root: Path) -> dict[str, str]:
    values = {}
    for line in (root / "etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value.strip().strip('"')
    return values


def _apt_entries(root: Path) -> list[tuple[str, list[str]]]:
    entries: list[tuple[str, list[str]]] = []
    apt = root / "etc/apt"
    for path in sorted(apt.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            )
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                entries.extend((uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split())
    one_line = [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    return entries


def inputs_digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _packages() -> list[str]:
    lines = (IMAGES_ROOT / "base" / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _has_image(client: Any, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_base(client: Any, *, force: bool, progress: Progress) -> str:
    """Make fleetgate/base from debootstrap and return its reference."""
    mirror, suite = host_apt_source()
    packages = _packages()
    ref = f"{BASE_REPO}:{inputs_digest(suite, *packages)}"
    if _has_image(client, ref) and not force:
        progress(f"{ref} is current")
        client.images.get(ref).tag(BASE_REPO, "latest")
        return ref
    if shutil.which("debootstrap") is None:
        raise ImageBuildFailed("debootstrap is not installed: `apt-get install debootstrap` (install.sh does this)")
    with tempfile.TemporaryDirectory(prefix="fleetgate-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"debootstrap {suite} with {', '.join(packages)}")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            progress,
        )
        _trim(rootfs)
        progress(f"importing the root file system as {ref}")
        _import(client, rootfs, ref)
    client.images.get(ref).tag(BASE_REPO, "latest")
    return ref


def _run(argv: list[str], progress: Progress) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for raw in proc.stdout:
        line = raw.rstrip()
        tail = [*tail[-19:], line]
        if line.startswith(("I: Retrieving", "I: Validating")):
            continue
        progress(line)
    if proc.wait() != 0:
        raise ImageBuildFailed(f"{argv[0]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def _trim(rootfs: Path) -> None:
    """Drop what only the build needed: downloaded packages, apt lists, logs."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*.log"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()


def _import(client: Any, rootfs: Path, ref: str) -> None:
    repository, _, tag = ref.partition(":")
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        client.api.import_image_from_stream(
            tar.stdout,
            repository=repository,
            tag=tag,
            changes=[
                'ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
                "ENV LANG=C.UTF-8",
                'CMD ["/bin/bash"]',
                "LABEL fleetgate.image=base",
            ],
        )
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise ImageBuildFailed(f"tar of {rootfs} failed (exit {tar.returncode})")


def ensure_base(client: Any, base_ref: str, progress: Progress) -> str:
    """The id of `base_ref` on this engine, pulled first if it is not there yet (which needs a registry)."""
    if not _has_image(client, base_ref):
        repository, tag = docker.utils.parse_repository_tag(base_ref)
        progress(f"pulling {base_ref}")
        try:
            client.images.pull(repository, tag=tag or "latest")
        except docker.errors.DockerException as e:
            reason = str(getattr(e, "explanation", None) or e).strip().splitlines()[0][:300]
            raise ImageBuildFailed(
                f"the base image {base_ref} is not on this engine and could not be pulled ({reason}); "
                "pull or load it first, or leave out --base to build the base offline with debootstrap"
            ) from e
    return str(client.images.get(base_ref).id)


def build_python(client: Any, *, base_ref: str, force: bool, progress: Progress) -> str:
    """Build fleetgate/python on `base_ref` and return its reference (tagged by the base's id, so a newer base
    under the same name builds anew)."""
    context = IMAGES_ROOT / "python"
    dockerfile = (context / "Dockerfile").read_text()
    ref = f"{PYTHON_REPO}:{inputs_digest(ensure_base(client, base_ref, progress), dockerfile)}"
    if _has_image(client, ref) and not force:
        progress(f"{ref} is current")
        client.images.get(ref).tag(PYTHON_REPO, "latest")
        return ref
    progress(f"building {ref} on {base_ref}")
    repository = ref.partition(":")[0]
    for chunk in client.api.build(
        path=str(context),
        tag=ref,
        buildargs={"BASE": base_ref},
        network_mode="none" if base_ref.startswith(BASE_REPO) else None,
        rm=True,
        forcerm=True,
        decode=True,
        labels={"fleetgate.image": "python"},
    ):
        if "error" in chunk:
            raise ImageBuildFailed(f"docker build of {ref} failed: {chunk['error'].strip()}")
        text = str(chunk.get("stream", "")).strip()
        if text:
            progress(text)
    client.images.get(ref).tag(repository, "latest")
    return ref


def build_images(
    client: Any, *, base: str | None = None, force: bool = False, progress: Progress = lambda _: None
) -> dict[str, str]:
    """Build (or confirm) the base and python images; returns their references."""
    if os.geteuid() != 0 and base is None:
        raise ImageBuildFailed("debootstrap needs root: run `fleetgate images build` as root, or pass --base IMAGE")
    base_ref = base or build_base(client, force=force, progress=progress)
    return {
        "base": base_ref,
        "python": build_python(client, base_ref=base_ref, force=force, progress=progress),
    }
