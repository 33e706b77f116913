"""Oversight on the hot path, measured end to end in one run:

  gate     an auto-allowed `sdk.gate()` from inside a sandbox, through the runtime socket: median and p99
  resume   approval propagation: from the moment a decision is POSTed to the moment the waiting agent resumes
  queue    listing the approval queue with 1,000 pending approvals in it

The agent and the controller share the machine's clock (a container reads the host's), so "resumed at" minus
"posted at" is a real interval.

    .venv/bin/python bench/oversight.py --gates 2000 --approvals 30
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_controller, percentile

GATE_SCRIPT = """
import json, sys, time
from agent_runtime import sdk
n = int(sys.argv[1])
for _ in range(20):
    sdk.gate("read_file", {"path": "warmup"})
times = []
for i in range(n):
    t = time.perf_counter()
    sdk.gate("read_file", {"path": "f%d" % i})
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps(times))
"""

RESUME_SCRIPT = """
import json, sys, time
from agent_runtime import sdk
for i in range(int(sys.argv[1])):
    sdk.gate("deploy", {"n": i})
    print(json.dumps({"n": i, "resumed": time.time()}), flush=True)
"""

POLICY = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}


def gate_latency(admin: httpx.Client, operator: httpx.Client, n: int) -> list[float]:
    sandbox = operator.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": POLICY}).json()
    body = {"command": ["python3", "-c", GATE_SCRIPT, str(n)], "timeout_s": 600}
    result = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json=body, timeout=620).json()
    assert result["exit_code"] == 0, result["stderr"]
    return [float(x) for x in json.loads(result["stdout"])]


def propagation(admin: httpx.Client, operator: httpx.Client, rounds: int) -> list[float]:
    sandbox = operator.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": POLICY}).json()
    outputs: list[str] = []
    body = {"command": ["python3", "-c", RESUME_SCRIPT, str(rounds)], "timeout_s": 600}

    def agent() -> None:
        outputs.append(admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json=body, timeout=620).json()["stdout"])

    thread = threading.Thread(target=agent)
    thread.start()
    posted: list[float] = []
    for _ in range(rounds):
        item = None
        while item is None:
            items = admin.get("/api/v1/approvals", params={"sandbox": sandbox["id"]}).json()["items"]
            item = items[0] if items else None
            if item is None:
                time.sleep(0.01)
        time.sleep(0.05)  # the agent is parked in its long-poll, as a real one would be
        posted.append(time.time())
        assert admin.post(f"/api/v1/approvals/{item['id']}/decision", json={"decision": "approve"}).status_code == 200
    thread.join()
    resumed = [json.loads(line)["resumed"] for line in outputs[0].splitlines()]
    return [(r - p) * 1000 for r, p in zip(resumed, posted, strict=True)]


def queue_listing(admin: httpx.Client, operator: httpx.Client, pending: int, home: Path) -> dict[int, list[float]]:
    """Fill the queue with real pending approvals (gate calls that ask), then time the listing: the default first
    page (200 items) and everything (1,000 items) in one response."""
    sandbox = operator.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": POLICY}).json()
    secret = json.loads((home / "sandboxes" / sandbox["id"] / "sandbox.json").read_text())["token"]
    transport = httpx.HTTPTransport(uds=str(home / "gateway" / "runtime.sock"))
    route = f"/runtime/v1/sandboxes/{sandbox['id']}/actions"
    with httpx.Client(transport=transport, base_url="http://gw", headers={"Authorization": f"Bearer {secret}"}) as gw:
        for i in range(pending):
            assert gw.post(route, json={"tool": "deploy", "args": {"n": i}}).json()["status"] == "pending"
    times: dict[int, list[float]] = {200: [], 1000: []}
    for _ in range(30):
        for limit, samples in times.items():
            started = time.perf_counter()
            page = admin.get("/api/v1/approvals", params={"limit": limit}).json()
            samples.append((time.perf_counter() - started) * 1000)
            assert len(page["items"]) == limit
    assert page["pending"] >= pending
    return times


def row(values: list[float], goal: str, passed: bool) -> dict[str, Any]:
    verdict = "PASS" if passed else "FAIL"
    return {
        "median_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "runs": len(values),
        "goal": f"{goal}: {verdict}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gates", type=int, default=2000)
    parser.add_argument("--approvals", type=int, default=30)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--runtime", choices=["runsc", "runc"], default="runsc", help="the sandboxes' OCI runtime")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "oversight.json")
    args = parser.parse_args()
    settings = {"FLEETGATE_SANDBOX_RUNTIME": args.runtime}
    with (
        bench_controller(args.redis_url, **settings) as ctl,
        ctl.http("admin") as admin,
        ctl.http("operator") as operator,
    ):
        gates = gate_latency(admin, operator, args.gates)
        resume = propagation(admin, operator, args.approvals)
        listing = queue_listing(admin, operator, args.pending, ctl.home)
    rows = {
        "auto-allowed sdk.gate() through the socket": row(gates, "median < 5 ms", percentile(gates, 0.5) < 5),
        "decision POST -> waiting agent resumes": row(resume, "median < 50 ms", percentile(resume, 0.5) < 50),
        f"queue with {args.pending} pending: first page (200)": row(
            listing[200], "median < 100 ms", percentile(listing[200], 0.5) < 100
        ),
        f"queue with {args.pending} pending: all 1,000 at once": row(
            listing[1000], "median < 100 ms", percentile(listing[1000], 0.5) < 100
        ),
    }
    print(f"\nsandboxes under {args.runtime}")
    print(f"\n| {'what':<52} | median ms | p99 ms | runs | goal |")
    print(f"| {'-' * 52} | --------: | -----: | ---: | ---- |")
    for label, r in rows.items():
        print(f"| {label:<52} | {r['median_ms']:>9} | {r['p99_ms']:>6} | {r['runs']:>4} | {r['goal']} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
