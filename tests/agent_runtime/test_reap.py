"""The exec reaper on this machine's own /proc: it kills an exec's whole tree, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from agent_runtime.reap import MARKER_VARIABLE, reap, victims


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_reap_kills_the_marked_tree_including_a_child_that_cleared_its_environment_and_spares_the_rest() -> None:
    # A marked shell with a marked child, a grandchild started with an empty environment, and a detached
    # (double-forked, reparented) marked process; an unmarked neighbour must live.
    tree = "sleep 300 & env -i /bin/sleep 301 & (setsid sleep 302 &) ; echo ready; wait"
    marked = subprocess.Popen(
        ["sh", "-c", tree], env={**os.environ, MARKER_VARIABLE: "m1"}, stdout=subprocess.PIPE, text=True
    )
    neighbour = subprocess.Popen(["sleep", "303"], env={**os.environ, MARKER_VARIABLE: "other"})
    try:
        assert marked.stdout is not None
        assert marked.stdout.readline() == "ready\n"
        time.sleep(0.2)
        found = victims("m1")
        assert marked.pid in found
        assert len(found) == 4, found  # sh, sleep 300, the env -i sleep 301, the detached sleep 302
        assert neighbour.pid not in found
        assert reap("m1") >= 4
        marked.wait(5)
        deadline = time.monotonic() + 5
        while victims("m1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victims("m1") == []
        assert alive(neighbour.pid)
    finally:
        neighbour.kill()
        neighbour.wait()
        marked.kill()
        marked.wait()


def test_reap_of_an_unknown_marker_sends_nothing() -> None:
    assert reap("no-such-exec") == 0


def test_the_cli_reports_what_it_sent() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent_runtime", "reap", "no-such-exec"], capture_output=True, text=True, check=True
    )
    assert out.stdout == "signals sent: 0\n"
