"""`python3 -m agent_runtime reap MARKER`: kill every process of one `exec` when its deadline passes.

The controller starts each exec with `FLEETGATE_EXEC_ID=<marker>` in its environment, which every process it
starts inherits. At the deadline it runs this in the same sandbox: every process carrying the marker, and every
descendant of one (a child that cleared its environment is still below its parent), gets SIGKILL, round after
round until none is left, so a command that keeps forking cannot outrun it. Run from inside the sandbox, it works
the same under runc and gVisor and on any host; the sandbox's one user may signal its own processes.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Dict, List, Set

MARKER_VARIABLE = "FLEETGATE_EXEC_ID"
ROUNDS = 100
PAUSE_S = 0.01


def _processes() -> Dict[int, int]:
    """pid -> parent pid of every live (not zombie) process this user can see."""
    found: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[0] != b"Z":
            found[int(name)] = int(fields[1])
    return found


def _carries(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def victims(marker: str) -> List[int]:
    """The processes of exec `marker`: those carrying it, and everything below them."""
    entry = f"{MARKER_VARIABLE}={marker}".encode()
    parents = _processes()
    me = os.getpid()
    chosen: Set[int] = {pid for pid in parents if pid not in (me, 1) and _carries(pid, entry)}
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in chosen and pid not in chosen and pid != me}
        chosen |= below
        grew = bool(below)
    return sorted(chosen)


def reap(marker: str) -> int:
    """SIGKILL the processes of exec `marker` until none is left; how many signals were sent."""
    sent = 0
    for _ in range(ROUNDS):
        found = victims(marker)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except (ProcessLookupError, PermissionError):
                continue
        time.sleep(PAUSE_S)
    return sent
