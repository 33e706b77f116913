"""The trust boundary, read back from the engine and tried from inside a sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from controller.sandboxes.isolation import host_pids
from tests.conftest import Controller, make_controller, running, wait_for


def run(admin: httpx.Client, sandbox_id: str, *command: str, **extra: Any) -> dict[str, Any]:
    response = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": list(command), **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


@dataclass
class Fleet:
    """One controller whose sandboxes run under `runtime`, and the sandboxes a test made on it."""

    runtime: str
    controller: Controller
    admin: httpx.Client
    made: list[str] = field(default_factory=list)

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.admin.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", **body})
        assert response.status_code == 201, response.text
        self.made.append(response.json()["id"])
        return dict(response.json())

    def status(self, sandbox: dict[str, Any]) -> str:
        return str(self.admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"])


@pytest.fixture(scope="module")
def runc_controller(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, redis_url: str, python_image: str
) -> Iterator[Controller]:
    """A second controller with gVisor turned off, for the limits that mean something else under each runtime."""
    ctl = make_controller(
        tmp_path_factory.mktemp("runc"), redis_url, FLEETGATE_SANDBOX_RUNTIME="runc", FLEETGATE_POOL_SIZE="0"
    )
    with running(ctl, docker_client):
        yield ctl


@pytest.fixture(params=["runsc", "runc"])
def fleet(request: pytest.FixtureRequest, controller: Controller) -> Iterator[Fleet]:
    ctl = controller if request.param == "runsc" else request.getfixturevalue("runc_controller")
    with ctl.http("admin") as admin:
        on = Fleet(request.param, ctl, admin)
        yield on
        for sandbox_id in on.made:
            admin.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_sandboxes_run_under_gvisor_here(admin: httpx.Client, sandbox_factory: Any, docker_client: Any) -> None:
    """The test setup (install.sh) registers gVisor, so every integration test's sandbox runs under it."""
    sandbox = sandbox_factory()
    assert docker_client.api.inspect_container(sandbox["container_id"])["HostConfig"]["Runtime"] == "runsc"
    assert "Starting gVisor" in run(admin, sandbox["id"], "dmesg")["stdout"]  # the kernel it talks to is gVisor's
    isolation = admin.get("/api/v1/status").json()["checks"]["isolation"]
    assert isolation == {"local": "gVisor (runsc): each sandbox has a kernel of its own"}


def test_turning_gvisor_off_is_said_in_status(runc_controller: Controller) -> None:
    with runc_controller.http("admin") as admin:
        isolation = admin.get("/api/v1/status").json()["checks"]["isolation"]
    assert isolation == {"local": "runc, not gVisor: FLEETGATE_SANDBOX_RUNTIME=runc turns it off"}


def test_container_configuration_is_hardened(fleet: Fleet, docker_client: Any) -> None:
    sandbox = fleet.create(resources={"cpus": 0.5, "memory_mb": 128, "pids": 64})
    attrs = docker_client.api.inspect_container(sandbox["container_id"])
    host = attrs["HostConfig"]
    assert host["Runtime"] == fleet.runtime
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert not any("unconfined" in opt for opt in host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert host["PidMode"] in ("", "private")
    assert host["IpcMode"] == "private"
    assert host["Memory"] == 128 << 20
    assert host["MemorySwap"] == 128 << 20
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == host_pids(64, fleet.runtime)
    assert "/tmp" in host["Tmpfs"]
    assert attrs["Config"]["User"] == "10001:10001"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/workspace"]["RW"] is True
    for read_only in ("/opt/fleetgate/agent_runtime", "/run/fleetgate", "/run/fleetgate/sandbox"):
        assert mounts[read_only]["RW"] is False, read_only
    assert not any("docker.sock" in m.get("Source", "") for m in attrs["Mounts"])


NO_NEW_PRIVS = "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"  # PR_GET_NO_NEW_PRIVS


def test_inside_the_process_has_no_privileges(fleet: Fleet) -> None:
    sandbox = fleet.create()
    status = run(fleet.admin, sandbox["id"], "cat", "/proc/self/status")["stdout"]
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[0] == "10001"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapPrm"].strip() == "0000000000000000"
    assert run(fleet.admin, sandbox["id"], "python3", "-c", NO_NEW_PRIVS)["stdout"] == "1\n"
    if fleet.runtime == "runc":
        assert fields["CapBnd"].strip() == "0000000000000000"
        assert fields["Seccomp"].strip() == "2"  # filter mode: the engine's default profile
    # Under gVisor the system calls go to its Sentry, which runs under a seccomp filter of its own on the host;
    # the agent's capabilities are gVisor's to check, and it reports an effective and permitted set of none.


def test_writing_outside_the_workspace_fails(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    for path in ("/etc/evil", "/usr/bin/evil", "/opt/fleetgate/agent_runtime/evil.py", "/run/fleetgate/evil", "/evil"):
        result = run(admin, sandbox["id"], "sh", "-c", f"echo x > {path}")
        assert result["exit_code"] != 0, path
        assert "Read-only file system" in result["stderr"] or "Permission denied" in result["stderr"], result
    for path in ("/workspace/ok", "/tmp/ok"):
        assert run(admin, sandbox["id"], "sh", "-c", f"echo x > {path} && cat {path}")["stdout"] == "x\n"


def test_sandbox_has_no_network(admin: httpx.Client, controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    script = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(2)\n"
        f"try:\n    s.connect(('127.0.0.1', {controller.port})); print('connected')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
        "import os; print(sorted(os.listdir('/sys/class/net')))\n"
    )
    out = run(admin, sandbox["id"], "python3", "-c", script)["stdout"].splitlines()
    assert out[0].startswith("refused")
    assert out[1] == "['lo']"


def test_fork_bomb_is_stopped_by_the_pids_limit(fleet: Fleet, docker_client: Any) -> None:
    admin, controller = fleet.admin, fleet.controller
    bombed = fleet.create(resources={"pids": 64})
    neighbour = fleet.create()
    peak: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            stats = docker_client.api.stats(bombed["container_id"], stream=False, one_shot=True)
            peak.append(int((stats.get("pids_stats") or {}).get("current", 0)))
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    bomb = "bomb() { bomb | bomb & }; bomb"
    result = admin.post(
        f"/api/v1/sandboxes/{bombed['id']}/exec", json={"command": ["bash", "-c", bomb], "timeout_s": 8}
    )
    try:
        # While the bomb ran (and right after), the controller and the other sandboxes kept working.
        assert httpx.get(f"{controller.url}/healthz", timeout=5).status_code == 200
        assert run(admin, neighbour["id"], "echo", "alive")["stdout"] == "alive\n"
    finally:
        stop.set()
        sampler.join()
    assert peak
    limit = host_pids(64, fleet.runtime)
    assert max(peak) <= limit, peak  # never past the limit
    if fleet.runtime == "runc":
        assert result.status_code == 200, result.text
        assert result.json()["exit_code"] in (124, 0) or result.json()["timed_out"], result.json()
        assert max(peak) >= 32, peak  # it did fork up to the limit, and the sandbox lives
        docker_client.api.kill(bombed["container_id"])
    else:
        # gVisor's Sentry ran out of host threads at the limit, and the sandbox ended whole.
        assert result.status_code in (200, 409), result.text
        wait_for(lambda: fleet.status(bombed) == "exited", timeout=30, what="the bombed sandbox to end")
    assert admin.delete(f"/api/v1/sandboxes/{bombed['id']}").status_code == 200


def test_allocating_past_the_memory_limit_is_stopped_and_neighbours_live(fleet: Fleet) -> None:
    admin, controller = fleet.admin, fleet.controller
    greedy = fleet.create(resources={"memory_mb": 64}, command=["sh", "-c", "sleep 600"])
    neighbour = fleet.create()
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    started = time.monotonic()
    result = admin.post(
        f"/api/v1/sandboxes/{greedy['id']}/exec", json={"command": ["python3", "-c", hog], "timeout_s": 60}
    )
    assert httpx.get(f"{controller.url}/healthz").status_code == 200
    assert run(admin, neighbour["id"], "echo", "fine")["stdout"] == "fine\n"
    if fleet.runtime == "runc":
        assert result.json()["exit_code"] == 137  # the kernel's OOM killer, inside the sandbox's cgroup
        assert run(admin, greedy["id"], "echo", "still here")["stdout"] == "still here\n"
    else:
        # gVisor's kernel is one host process holding all of the sandbox's memory: the sandbox ends whole, and
        # the command's caller hears so at once, not at the command's 60 s deadline.
        assert result.status_code == 409, result.text
        assert "ended with it" in result.json()["detail"]
        assert time.monotonic() - started < 30
        wait_for(lambda: fleet.status(greedy) == "exited", timeout=30, what="the greedy sandbox to end")
        shown = admin.get(f"/api/v1/sandboxes/{greedy['id']}").json()
        assert shown["exit_code"] == 137, shown


def test_filling_tmp_fails_with_no_space_and_the_sandbox_lives(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(resources={"memory_mb": 256}, command=["sh", "-c", "echo up; sleep 600"])
    filled = run(admin, sandbox["id"], "dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M", "count=400", timeout_s=60)
    assert filled["exit_code"] != 0
    assert "No space left on device" in filled["stderr"]
    assert run(admin, sandbox["id"], "df", "-m", "/tmp")["stdout"].split()[-5] == "64"  # a quarter of 256 MiB
    assert run(admin, sandbox["id"], "echo", "still here")["stdout"] == "still here\n"
    assert admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"] == "running"


def test_a_full_workspace_refuses_writes_and_the_sandbox_lives(
    admin: httpx.Client, controller: Controller, sandbox_factory: Any
) -> None:
    small = sandbox_factory(resources={"disk_mb": 64}, command=["sh", "-c", "sleep 600"])
    neighbour = sandbox_factory(command=["sh", "-c", "sleep 600"])
    assert small["resources"]["disk_mb"] == 64
    filled = run(admin, small["id"], "dd", "if=/dev/zero", "of=/workspace/fill", "bs=1M", "count=200", timeout_s=60)
    assert filled["exit_code"] != 0
    assert "No space left on device" in filled["stderr"]
    assert run(admin, small["id"], "echo", "still here")["stdout"] == "still here\n"
    workspace = admin.get(f"/api/v1/sandboxes/{small['id']}").json()["workspace"]
    assert 55 <= workspace["used_mb"] <= workspace["limit_mb"] <= 64, workspace
    assert run(admin, neighbour["id"], "dd", "if=/dev/zero", "of=/workspace/f", "bs=1M", "count=100")["exit_code"] == 0
    image = controller.home / "workspaces" / f"{small['id']}.img"
    assert image.stat().st_blocks * 512 < 80 << 20  # sparse: it takes the disk that was written, not its size
    assert admin.delete(f"/api/v1/sandboxes/{small['id']}").status_code == 200
    assert not image.exists()
    assert not (controller.home / "workspaces" / small["id"]).is_mount()
