"""Time to first command: create a sandbox, run `echo ok` in it, until the result is back.

Three ways, interleaved round-robin in one run so they share the machine's noise, all under one OCI runtime
(`--runtime`, gVisor's runsc by default, as fleetgate's sandboxes are where the engine has it):
  raw   docker-py create + start + exec_run of the same image under the same runtime (no fleetgate, no
        hardening): the baseline
  cold  fleetgate over its REST API: POST /api/v1/sandboxes {"image"} then POST .../exec
  warm  the same from a template's warm pool: POST /api/v1/sandboxes {"template"} then POST .../exec
and two floors on sandboxes already running: `docker exec` alone (what each command cost before the runtime
channel) and fleetgate's exec through the API (the supervisor runs it: sandboxes/channel.py).
Before each warm run the bench waits for the worker to refill the pool, so every claim finds a ready sandbox
(and no refill competes with the measurement). Removal is not timed.

    .venv/bin/python bench/ttfc.py --runs 20                  # gVisor
    .venv/bin/python bench/ttfc.py --runs 20 --runtime runc   # runc

Needs the Docker engine, Redis and the images (./scripts/test sets all of these up). It starts its own
controller (API, gateway, Celery worker) on a temporary home and removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_controller, percentile

IMAGE = "fleetgate/python:latest"
TEMPLATE = "bench"
POOL = 2


def raw_once(client: Any, runtime: str) -> float:
    started = time.perf_counter()
    container = client.containers.create(
        IMAGE, ["sleep", "3600"], labels={"fleetgate.instance": "bench-raw"}, runtime=runtime
    )
    container.start()
    code, out = container.exec_run(["echo", "ok"])
    elapsed = time.perf_counter() - started
    assert (code, out) == (0, b"ok\n"), (code, out)
    container.remove(force=True)
    return elapsed


def exec_only(container: Any) -> float:
    """`docker exec` alone on an already running container: the floor under every path above."""
    started = time.perf_counter()
    code, out = container.exec_run(["echo", "ok"])
    elapsed = time.perf_counter() - started
    assert (code, out) == (0, b"ok\n"), (code, out)
    return elapsed


def fleetgate_exec(api: httpx.Client, sandbox_id: str) -> float:
    """`echo ok` through the API on a running sandbox: the runtime channel, against `docker exec` alone."""
    started = time.perf_counter()
    result = api.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": ["echo", "ok"]}).json()
    elapsed = time.perf_counter() - started
    assert result["stdout"] == "ok\n", result
    return elapsed


def fleetgate_once(api: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    created = api.post("/api/v1/sandboxes", json=body)
    assert created.status_code == 201, created.text
    sandbox_id = created.json()["id"]
    result = api.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": ["echo", "ok"]}).json()
    elapsed = time.perf_counter() - started
    assert result["stdout"] == "ok\n", result
    api.delete(f"/api/v1/sandboxes/{sandbox_id}")
    return elapsed


def wait_for_pool(api: httpx.Client, size: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.get(f"/api/v1/templates/{TEMPLATE}").json()["pool_ready"] >= size:
            return
        time.sleep(0.1)
    raise RuntimeError("the warm pool was not refilled in time")


def summarise(name: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
        "runs": len(ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runtime", choices=["runsc", "runc"], default="runsc", help="the OCI runtime of every path")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "ttfc.json")
    args = parser.parse_args()

    client = docker.from_env()
    with bench_controller(args.redis_url, FLEETGATE_SANDBOX_RUNTIME=args.runtime) as ctl, ctl.http() as api:
        made = api.post("/api/v1/templates", json={"name": TEMPLATE, "image": IMAGE, "pool_size": POOL})
        assert made.status_code == 201, made.text
        wait_for_pool(api, POOL)
        runs: dict[str, list[float]] = {"raw": [], "cold": [], "warm": [], "exec": [], "api_exec": []}
        idle = client.containers.run(
            IMAGE, ["sleep", "3600"], detach=True, labels={"fleetgate.instance": "bench-raw"}, runtime=args.runtime
        )
        running = api.post("/api/v1/sandboxes", json={"image": IMAGE}).json()["id"]
        isolation = api.get("/api/v1/status").json()["checks"]["isolation"]["local"]
        assert isolation.startswith("gVisor") == (args.runtime == "runsc"), isolation
        steps: dict[str, Callable[[], float]] = {
            "raw": lambda: raw_once(client, args.runtime),
            "cold": lambda: fleetgate_once(api, {"image": IMAGE}),
            "warm": lambda: fleetgate_once(api, {"template": TEMPLATE}),
            "exec": lambda: exec_only(idle),
            "api_exec": lambda: fleetgate_exec(api, running),
        }
        for step in steps.values():  # one untimed warm-up each: first-use costs (image probe, SQL)
            step()
            wait_for_pool(api, POOL)
        for i in range(args.runs):
            for kind, step in steps.items():
                runs[kind].append(step())
                wait_for_pool(api, POOL)
            print(f"run {i + 1}/{args.runs}", file=sys.stderr, end="\r")

    results = {kind: summarise(kind, values) for kind, values in runs.items()}
    ratio = results["cold"]["median_ms"] / results["raw"]["median_ms"]
    print_table(results, ratio, args.runtime)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = args.json.with_name(f"{args.json.stem}-{args.runtime}{args.json.suffix}")
    out.write_text(
        json.dumps({"runtime": args.runtime, "results": results, "cold_over_raw": round(ratio, 2)}, indent=2) + "\n"
    )
    return 0


def print_table(results: dict[str, dict[str, float]], ratio: float, runtime: str) -> None:
    goals = {
        "raw": "baseline",
        "cold": f"<= 1.3x raw: {ratio:.2f}x {'PASS' if ratio <= 1.3 else 'FAIL'}",
        "warm": f"median < 100 ms: {'PASS' if results['warm']['median_ms'] < 100 else 'FAIL'}",
        "exec": "what every command cost before the runtime channel",
        "api_exec": "the runtime channel",
    }
    labels = {
        "raw": "raw docker-py create+start+exec",
        "cold": "fleetgate cold (API create + exec)",
        "warm": "fleetgate warm pool (API create + exec)",
        "exec": "docker exec alone (running container)",
        "api_exec": "fleetgate exec (API, running sandbox)",
    }
    print(f"\ntime to first command under {runtime}, {results['raw']['runs']} runs each, interleaved\n")
    print(f"| {'path':<40} | median ms | p95 ms | min ms | max ms | goal |")
    print(f"| {'-' * 40} | --------: | -----: | -----: | -----: | ---- |")
    for kind, row in results.items():
        print(
            f"| {labels[kind]:<40} | {row['median_ms']:>9} | {row['p95_ms']:>6} | {row['min_ms']:>6} | "
            f"{row['max_ms']:>6} | {goals[kind]} |"
        )


if __name__ == "__main__":
    sys.exit(main())
