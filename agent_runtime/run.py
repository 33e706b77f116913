"""`python3 -m agent_runtime run [--risk R] -- CMD ...`: run any command through the gate as tool `shell`.

An allowed command replaces this process (same exit status, same stdin/stdout); one an approver edited runs
as they wrote it, through /bin/sh; a denied one exits 126 with the reason on stderr.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import List

from agent_runtime import sdk

DENIED_EXIT = 126


def run(argv: List[str], risk: str = "low") -> int:
    if not argv:
        sys.stderr.write("fleetgate: nothing to run; usage: python3 -m agent_runtime run -- CMD ...\n")
        return 2
    command = shlex.join(argv)
    try:
        args = sdk.gate("shell", {"command": command}, risk=risk)
    except sdk.Denied as e:
        sys.stderr.write("fleetgate: denied: %s\n" % e.message)
        return DENIED_EXIT
    decided = str(args.get("command", command))
    sys.stdout.flush()
    try:
        if decided == command:
            os.execvp(argv[0], argv)  # noqa: S606 (the gated command itself, no shell)
        else:
            os.execv("/bin/sh", ["/bin/sh", "-c", decided])  # noqa: S606 (an approver's edit is shell text)
    except OSError as e:
        sys.stderr.write("fleetgate: cannot run %s: %s\n" % (argv[0], e))
        return 127
    return 0  # not reached: exec replaced this process
