"""The trust boundary, read back from the engine and tried from inside a sandbox."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.conftest import Controller


def run(admin: httpx.Client, sandbox_id: str, *command: str, **extra: Any) -> dict[str, Any]:
    response = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": list(command), **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_container_configuration_is_hardened(sandbox_factory: Any, docker_client: Any) -> None:
    sandbox = sandbox_factory(resources={"cpus": 0.5, "memory_mb": 128, "pids": 64})
    attrs = docker_client.api.inspect_container(sandbox["container_id"])
    host = attrs["HostConfig"]
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
    assert host["PidsLimit"] == 64
    assert "/tmp" in host["Tmpfs"]
    assert attrs["Config"]["User"] == "10001:10001"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/workspace"]["RW"] is True
    for read_only in ("/opt/fleetgate/agent_runtime", "/run/fleetgate", "/run/fleetgate/sandbox"):
        assert mounts[read_only]["RW"] is False, read_only
    assert not any("docker.sock" in m.get("Source", "") for m in attrs["Mounts"])


def test_inside_the_process_has_no_privileges(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    status = run(admin, sandbox["id"], "cat", "/proc/self/status")["stdout"]
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[0] == "10001"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # filter mode: the engine's default profile


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


def test_fork_bomb_is_stopped_by_the_pids_limit(
    admin: httpx.Client, controller: Controller, sandbox_factory: Any, docker_client: Any
) -> None:
    bombed = sandbox_factory(resources={"pids": 64})
    neighbour = sandbox_factory()
    peak: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            stats = docker_client.api.stats(bombed["container_id"], stream=False, one_shot=True)
            peak.append(int(stats.get("pids_stats", {}).get("current", 0)))
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    bomb = "bomb() { bomb | bomb & }; bomb"
    result = run(admin, bombed["id"], "bash", "-c", bomb, timeout_s=8)
    try:
        # While the bomb ran (and right after), the controller and the other sandboxes kept working.
        assert httpx.get(f"{controller.url}/healthz", timeout=5).status_code == 200
        assert run(admin, neighbour["id"], "echo", "alive")["stdout"] == "alive\n"
    finally:
        stop.set()
        sampler.join()
    assert result["exit_code"] in (124, 0) or result["timed_out"]
    assert peak
    assert 32 <= max(peak) <= 64, peak  # it did fork up to the limit, and no further
    docker_client.api.kill(bombed["container_id"])
    assert admin.delete(f"/api/v1/sandboxes/{bombed['id']}").status_code == 200


def test_allocating_past_the_memory_limit_kills_only_that_sandboxs_process(
    admin: httpx.Client, controller: Controller, sandbox_factory: Any
) -> None:
    greedy = sandbox_factory(resources={"memory_mb": 64})
    neighbour = sandbox_factory()
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    result = run(admin, greedy["id"], "python3", "-c", hog, timeout_s=60)
    assert result["exit_code"] == 137  # SIGKILL from the kernel's OOM killer inside the sandbox's cgroup
    assert httpx.get(f"{controller.url}/healthz").status_code == 200
    assert run(admin, neighbour["id"], "echo", "fine")["stdout"] == "fine\n"
    assert run(admin, greedy["id"], "echo", "still here")["stdout"] == "still here\n"


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
