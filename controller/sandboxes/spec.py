"""The hardened container specification of a sandbox: pure data, no Docker calls.

This is the first line of DESIGN.md's trust boundary. Every sandbox gets: no network, every capability dropped,
no-new-privileges, the engine's default seccomp profile, a read-only root with a tmpfs /tmp and a writable
workspace volume, a non-root user, CPU/memory/pids limits, a private IPC namespace, bounded logs, and gVisor
when the engine has it. Never privileged, never the Docker socket, never the host's network, PID or IPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_runtime import egress
from agent_runtime.reap import MARKER_VARIABLE
from controller.sandboxes.isolation import host_pids

LABEL_SANDBOX = "fleetgate.sandbox"
LABEL_INSTANCE = "fleetgate.instance"
LABEL_KIND = "fleetgate.kind"
LABEL_TEMPLATE = "fleetgate.template"

WORKSPACE = "/workspace"
RUNTIME_MOUNT = "/opt/fleetgate"
GATEWAY_MOUNT = "/run/fleetgate"
CREDENTIALS_MOUNT = "/run/fleetgate/sandbox"
SUPERVISOR = ["python3", "-m", "agent_runtime", "supervise"]
REAP = ["python3", "-m", "agent_runtime", "reap"]  # + an exec's marker: kills its processes (agent_runtime/reap.py)
EXEC_MARKER = MARKER_VARIABLE
EGRESS_ENV = egress.environment()  # HTTP(S)_PROXY to the sandbox's own proxy door; nothing else reaches out
PROBE = "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 3)"
PROBE_TOO_OLD = 3


@dataclass(frozen=True)
class SandboxShape:
    """What varies between sandboxes; everything else in the spec is fixed hardening."""

    sandbox_id: str
    image: str
    cpus: float
    memory_mb: int
    pids: int
    template: str | None = None


@dataclass(frozen=True)
class HostPaths:
    """Host folders bind-mounted into every sandbox, read-only."""

    runtime_package: Path
    gateway_dir: Path
    credentials_dir: Path


def labels(instance: str, sandbox_id: str, kind: str) -> dict[str, str]:
    return {LABEL_SANDBOX: sandbox_id, LABEL_INSTANCE: instance, LABEL_KIND: kind}


def tmp_size_mb(memory_mb: int) -> int:
    """The size of a sandbox's /tmp: a quarter of its memory. A tmpfs's pages count against the memory limit, so
    a /tmp as large as the memory lets one full /tmp OOM-kill the whole sandbox; at a quarter, filling it fails
    with "No space left on device" and the sandbox lives."""
    return max(16, memory_mb // 4)


def engine_name(instance: str, sandbox_id: str) -> str:
    """The name of a sandbox's container and of its workspace volume on the engine (Docker keeps them apart)."""
    return f"fleetgate-{instance}-{sandbox_id}"


@dataclass(frozen=True)
class MountSpec:
    target: str
    source: str
    type: str  # "volume" | "bind"
    read_only: bool = False


def container_spec(
    shape: SandboxShape,
    *,
    instance: str,
    uid: int,
    paths: HostPaths,
    runtime: str | None,
) -> dict[str, Any]:
    """The create parameters of a hardened sandbox, in docker-py's vocabulary (the engine adapter builds the call)."""
    memory = f"{shape.memory_mb}m"
    container_labels = labels(instance, shape.sandbox_id, "sandbox")
    if shape.template:
        container_labels[LABEL_TEMPLATE] = shape.template
    spec: dict[str, Any] = {
        "image": shape.image,
        "entrypoint": SUPERVISOR,
        "command": [],
        "name": engine_name(instance, shape.sandbox_id),
        "hostname": shape.sandbox_id.replace("_", "-"),
        "labels": container_labels,
        "user": f"{uid}:{uid}",
        "working_dir": WORKSPACE,
        "environment": {
            "PYTHONPATH": RUNTIME_MOUNT,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "HOME": "/tmp",  # noqa: S108 (the sandbox's own tmpfs)
            "FLEETGATE_SANDBOX_ID": shape.sandbox_id,
            **EGRESS_ENV,
        },
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "read_only": True,
        "ipc_mode": "private",
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={tmp_size_mb(shape.memory_mb)}m,mode=1777"},  # noqa: S108
        "mounts": [
            MountSpec(WORKSPACE, engine_name(instance, shape.sandbox_id), "volume"),
            MountSpec(f"{RUNTIME_MOUNT}/agent_runtime", str(paths.runtime_package), "bind", read_only=True),
            MountSpec(GATEWAY_MOUNT, str(paths.gateway_dir), "bind", read_only=True),
            MountSpec(CREDENTIALS_MOUNT, str(paths.credentials_dir), "bind", read_only=True),
        ],
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(shape.cpus * 1e9),
        "pids_limit": host_pids(shape.pids, runtime),
        "oom_score_adj": 500,
        "init": True,
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        "detach": True,
    }
    if runtime:
        spec["runtime"] = runtime
    return spec


def probe_spec(image: str, *, instance: str, uid: int, runtime: str | None = None) -> dict[str, Any]:
    """A short-lived, equally locked-down container that checks an image can host the runtime (python3 >= 3.9),
    under the runtime its sandboxes will get."""
    spec: dict[str, Any] = {
        "image": image,
        "entrypoint": ["python3", "-c", PROBE],
        "command": [],
        "labels": labels(instance, "", "probe"),
        "user": f"{uid}:{uid}",
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "mem_limit": "64m",
        "pids_limit": host_pids(16, runtime),
        "init": True,
        "detach": True,
    }
    if runtime:
        spec["runtime"] = runtime
    return spec
