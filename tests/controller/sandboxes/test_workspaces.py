"""When a host cannot give workspaces a size, the controller says exactly why (the limits themselves are shown
on a real engine in test_hardening)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.sandboxes import workspaces
from controller.sandboxes.workspaces import LoopWorkspaces


def test_without_root_workspaces_are_not_limited_and_the_reason_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspaces.os, "geteuid", lambda: 1000)
    assert LoopWorkspaces(tmp_path, 10001).unavailable() == (
        "the controller does not run as root, which mounting a workspace needs"
    )


def test_a_missing_tool_is_named_with_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspaces.os, "geteuid", lambda: 0)
    monkeypatch.setattr(workspaces.shutil, "which", lambda tool: None if tool == "mkfs.ext4" else f"/usr/bin/{tool}")
    assert LoopWorkspaces(tmp_path, 10001).unavailable() == "mkfs.ext4 not found (apt-get install e2fsprogs mount)"


def test_the_answer_is_found_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspaces.os, "geteuid", lambda: 1000)
    store = LoopWorkspaces(tmp_path, 10001)
    first = store.unavailable()
    monkeypatch.setattr(workspaces.os, "geteuid", lambda: 0)
    assert store.unavailable() == first


def test_removing_a_workspace_that_is_not_there_is_fine(tmp_path: Path) -> None:
    LoopWorkspaces(tmp_path, 10001).remove("sb_000000000000")
    assert LoopWorkspaces(tmp_path, 10001).usage("sb_000000000000") is None
