"""The gate's own cost, without HTTP: the flow the gateway calls (token check, policy, action row, audit entry,
commit), in this process.

What `bench/oversight.py` measures end to end minus the round trip through uvicorn and the runtime socket; the
difference between the two is the transport. The action's live event is dropped here: the controller hands it to
its event bus thread, off the request's path (`bench/events.py` measures that).

    .venv/bin/python bench/gate_inprocess.py --calls 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import percentile
from controller.auth import hash_token
from controller.config import Settings
from controller.db import migrate, session_scope
from controller.fleet import Fleet
from controller.models import Sandbox, SandboxStatus
from controller.oversight.policy import Risk

SANDBOX_ID = "sb_000000000001"
SECRET = "fgs_" + "x" * 40
POLICY = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}


class _Dropped:
    """Stands in for the controller's event bus, its task queue and its wake-up channel (an allowed read_file
    queues no task and wakes nobody)."""

    def submit(self, items: object) -> None:
        pass

    def send(self, task: object, args: object, *, delay_s: float = 0.0) -> str:
        raise AssertionError("an auto-allowed action queues no task")

    def state(self, task_id: str) -> dict[str, object]:
        return {}

    def publish(self, items: object) -> None:
        raise AssertionError("an auto-allowed action wakes nobody")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        settings = Settings(home=Path(tmp))
        migrate(settings)
        dropped = _Dropped()
        fleet = Fleet(settings, events=dropped, tasks=dropped, wake=dropped)
        with session_scope(fleet.db) as session:
            session.add(
                Sandbox(
                    id=SANDBOX_ID,
                    image="fleetgate/python:latest",
                    cpus=1,
                    memory_mb=512,
                    pids=256,
                    status=SandboxStatus.running,
                    token_hash=hash_token(SECRET),
                    policy=POLICY,
                )
            )

        def one(i: int) -> float:
            started = time.perf_counter()
            fleet.runtime.propose(
                secret=SECRET,
                sandbox_id=SANDBOX_ID,
                tool="read_file",
                args={"path": f"f{i}"},
                risk=Risk.low,
                brokered=False,
            )
            return (time.perf_counter() - started) * 1000

        for i in range(100):  # warm-up: caches, compiled policy, SQLite pages
            one(i)
        cpu = time.process_time()
        times = [one(i) for i in range(args.calls)]
        cpu_ms = (time.process_time() - cpu) * 1000
        fleet.db.dispose()
    print(f"\nauto-allowed gate in-process, {args.calls} calls (no HTTP)\n")
    print("| median ms | p99 ms | mean ms | CPU ms per call |")
    print("| --------: | -----: | ------: | --------------: |")
    print(
        f"| {statistics.median(times):9.2f} | {percentile(times, 0.99):6.2f} | {statistics.mean(times):7.2f} "
        f"| {cpu_ms / args.calls:15.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
