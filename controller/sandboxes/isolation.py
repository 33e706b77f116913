"""Which OCI runtime a sandbox runs under: gVisor (`runsc`) where the engine has it and it works, runc otherwise.

gVisor puts a user-space kernel between the agent and the host's: a sandbox's system calls go to gVisor's Sentry,
not to Linux. The choice is made once per engine and kept, with the reason when it is not gVisor, so that
`fleetgate status` can say exactly why (`FLEETGATE_SANDBOX_RUNTIME`: `auto` picks gVisor when it can, `runsc`
requires it, `runc` turns it off).

Two limits mean something else under gVisor, and the spec accounts for it (see `host_pids`):
- pids: on gVisor's ptrace platform every process inside costs the host several threads (the Sentry's and a stub
  per address space), so the engine's pids limit caps those, not the processes the agent sees. A sandbox that
  forks past it ends whole; the host and the other sandboxes are untouched.
- memory: the Sentry is one host process holding all of the sandbox's memory, so a sandbox past its memory limit
  is OOM-killed whole rather than one process in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config import RuntimeSetting

GVISOR = "runsc"

# Measured on the ptrace platform of Debian's runsc (0.0~20221219): an idle sandbox holds about 44 host threads,
# and each process inside adds 5 to 9 more.
GVISOR_BASE_PIDS = 64
GVISOR_PIDS_PER_PROCESS = 10


@dataclass(frozen=True)
class Isolation:
    """The runtime a host's sandboxes get (None: the engine's default, runc) and, when it is not gVisor, why."""

    runtime: str | None
    why_not_gvisor: str = ""

    @property
    def gvisor(self) -> bool:
        return self.runtime == GVISOR

    def describe(self) -> str:
        if self.gvisor:
            return "gVisor (runsc): each sandbox has a kernel of its own"
        return f"runc, not gVisor: {self.why_not_gvisor}"


def without_probe(setting: RuntimeSetting, runtimes: frozenset[str], host: str) -> Isolation | None:
    """The choice when no trial container is needed: turned off, or runsc not registered. None: try runsc."""
    if setting == "runc":
        return Isolation(None, "FLEETGATE_SANDBOX_RUNTIME=runc turns it off")
    if GVISOR not in runtimes:
        return Isolation(
            None,
            f"the Docker engine of host {host!r} has no 'runsc' runtime registered "
            "(./install.sh installs gVisor and registers it; see the README's 'gVisor' section)",
        )
    return None


def host_pids(pids: int, runtime: str | None) -> int:
    """The engine's pids limit for a sandbox allowed `pids` processes (see the module's docstring)."""
    if runtime == GVISOR:
        return GVISOR_BASE_PIDS + GVISOR_PIDS_PER_PROCESS * pids
    return pids
