"""`python3 -m agent_runtime supervise` (the sandbox's first process)."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["supervise"]:
        # The sandbox's doors before anything else: a command started by `docker exec` right after the container
        # finds them listening (its connection waits in the queue until the supervisor serves it).
        from agent_runtime import egress

        doors = egress.bind()
        from agent_runtime.supervisor import main as supervise

        return supervise(doors)
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m agent_runtime", description="fleetgate's in-sandbox runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("supervise", help="run the sandbox's command and report it (the container's entrypoint)")
    run = commands.add_parser("run", help="run a command through the gate (tool `shell`)")
    run.add_argument("--risk", default="low", choices=["low", "medium", "high", "critical"])
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD ...")
    reap = commands.add_parser("reap", help="kill every process of one exec (the controller's deadline)")
    reap.add_argument("marker")
    args = parser.parse_args(argv)
    if args.command == "run":
        from agent_runtime.run import run as run_command

        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return run_command(command, risk=args.risk)
    if args.command == "reap":
        from agent_runtime.reap import reap as reap_exec

        print("signals sent: %d" % reap_exec(args.marker))
        return 0
    parser.error("unknown command %r" % args.command)
    return 2


if __name__ == "__main__":
    sys.exit(main())
