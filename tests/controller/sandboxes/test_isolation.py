"""The choice of gVisor or runc per engine, on the in-memory engine: when each is picked and what is said why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.config import RuntimeSetting
from controller.errors import Invalid, Unavailable
from controller.sandboxes.credentials import Credentials
from controller.sandboxes.memory import MemoryEngine, MemoryWorkspaces
from controller.sandboxes.provision import Provisioner

IMAGE = "fleetgate/python:latest"


def provisioner(tmp_path: Path, setting: RuntimeSetting = "auto") -> Provisioner:
    return Provisioner(
        instance="t",
        uid=10001,
        credentials=Credentials(tmp_path / "sandboxes", 10001),
        gateway_dir=tmp_path / "gateway",
        workspaces=MemoryWorkspaces(),
        runtime=setting,
    )


def engine(*runtimes: str) -> MemoryEngine:
    found = MemoryEngine()
    found.facts_ = replace(found.facts_, runtimes=frozenset({"runc", *runtimes}))
    return found


def trials(found: MemoryEngine) -> int:
    return sum(1 for call, _ in found.calls if call == "run_to_end")


def test_gvisor_when_runsc_is_registered_and_runs_and_one_trial_serves_the_image_check(tmp_path: Path) -> None:
    prov, found = provisioner(tmp_path), engine("runsc")
    prov.require_image(found, IMAGE)
    isolation = prov.isolation(found, IMAGE)
    assert isolation.gvisor
    assert isolation.describe().startswith("gVisor (runsc)")
    assert trials(found) == 1  # the trial under runsc was also the image's probe


def test_runc_when_runsc_is_not_registered_and_status_says_how_to_get_it(tmp_path: Path) -> None:
    isolation = provisioner(tmp_path).isolation(engine(), IMAGE)
    assert isolation.runtime is None
    assert "has no 'runsc' runtime registered" in isolation.describe()
    assert "install.sh" in isolation.describe()


def test_runc_when_runsc_fails_where_runc_works_with_the_engines_reason(tmp_path: Path) -> None:
    found = engine("runsc")
    found.broken_runtimes["runsc"] = "OCI runtime create failed: runsc: cannot ptrace"
    prov = provisioner(tmp_path)
    prov.require_image(found, IMAGE)
    isolation = prov.isolation(found, IMAGE)
    assert isolation.runtime is None
    assert "runsc is registered on host 'local' but failed: OCI runtime create failed" in isolation.describe()
    before = trials(found)
    prov.isolation(found, IMAGE)
    assert trials(found) == before  # decided once per engine


def test_an_image_that_fails_under_both_runtimes_is_the_images_fault_not_gvisors(tmp_path: Path) -> None:
    found, prov = engine("runsc"), provisioner(tmp_path)
    found.probe_exit = 127
    with pytest.raises(Invalid, match="no working python3"):
        prov.require_image(found, IMAGE)
    found.probe_exit = 0
    assert prov.isolation(found, IMAGE).gvisor  # not marked broken by a bad image


def test_runc_setting_turns_gvisor_off(tmp_path: Path) -> None:
    isolation = provisioner(tmp_path, "runc").isolation(engine("runsc"), IMAGE)
    assert isolation.runtime is None
    assert "FLEETGATE_SANDBOX_RUNTIME=runc" in isolation.describe()


def test_runsc_setting_refuses_sandboxes_where_gvisor_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=r"FLEETGATE_SANDBOX_RUNTIME=runsc requires gVisor.*no 'runsc' runtime"):
        provisioner(tmp_path, "runsc").require_image(engine(), IMAGE)
