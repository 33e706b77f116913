"""The hardened container spec, as pure data (unit tests; the engine read-back is in test_hardening)."""

from __future__ import annotations

from pathlib import Path

from controller.sandboxes.spec import HostPaths, SandboxShape, container_spec, probe_spec, tmp_size_mb

PATHS = HostPaths(Path("/pkg/agent_runtime"), Path("/home/gateway"), Path("/home/sandboxes/sb_1"))
SHAPE = SandboxShape("sb_0123456789ab", "img:1", 1.5, 256, 100, "python")


def spec(runtime: str | None = None) -> dict[str, object]:
    return container_spec(SHAPE, instance="abc", uid=10001, paths=PATHS, runtime=runtime)


def test_spec_locks_everything_down() -> None:
    s = spec()
    assert s["network_mode"] == "none"
    assert s["cap_drop"] == ["ALL"]
    assert s["security_opt"] == ["no-new-privileges:true"]
    assert s["read_only"] is True
    assert s["privileged"] is False
    assert s["user"] == "10001:10001"
    assert s["ipc_mode"] == "private"
    assert "pid_mode" not in s
    assert s["mem_limit"] == s["memswap_limit"] == "256m"
    assert s["nano_cpus"] == 1_500_000_000
    assert s["pids_limit"] == 100
    assert "runtime" not in s


def test_spec_mounts_only_what_the_sandbox_needs_and_read_only() -> None:
    mounts = {m.target: m for m in spec()["mounts"]}  # type: ignore[attr-defined]
    assert set(mounts) == {"/workspace", "/opt/fleetgate/agent_runtime", "/run/fleetgate", "/run/fleetgate/sandbox"}
    assert mounts["/workspace"].type == "volume"
    assert not mounts["/workspace"].read_only
    for target in ("/opt/fleetgate/agent_runtime", "/run/fleetgate", "/run/fleetgate/sandbox"):
        assert mounts[target].read_only is True
    assert not any("docker.sock" in m.source for m in mounts.values())


def test_spec_labels_name_the_sandbox_instance_and_template() -> None:
    assert spec()["labels"] == {
        "fleetgate.sandbox": "sb_0123456789ab",
        "fleetgate.instance": "abc",
        "fleetgate.kind": "sandbox",
        "fleetgate.template": "python",
    }


def test_the_runtime_is_named_only_for_gvisor_and_its_pids_limit_counts_host_threads() -> None:
    assert "runtime" not in spec(None)
    assert spec(None)["pids_limit"] == SHAPE.pids
    gvisor = spec("runsc")
    assert gvisor["runtime"] == "runsc"
    assert gvisor["pids_limit"] == 64 + 10 * SHAPE.pids  # gVisor's Sentry and stubs are host threads too
    probe = probe_spec("img:1", instance="abc", uid=10001, runtime="runsc")
    assert probe["runtime"] == "runsc"
    assert probe["pids_limit"] == 64 + 10 * 16


def test_probe_is_as_locked_down_as_a_sandbox() -> None:
    probe = probe_spec("img:1", instance="abc", uid=10001)
    for key in ("network_mode", "cap_drop", "security_opt", "read_only", "user"):
        assert probe[key] == spec()[key], key


def test_tmp_is_a_quarter_of_the_memory_so_filling_it_cannot_oom_kill_the_sandbox() -> None:
    assert spec()["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}  # SHAPE has 256 MiB
    assert tmp_size_mb(8192) == 2048
    assert tmp_size_mb(32) == 16  # never smaller than a useful /tmp
