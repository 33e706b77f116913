"""Live stream latency: from an agent's printed line to an SSE client, at a sustained rate from many sandboxes.

20 sandboxes each print 100 timestamped lines a second (2,000 events/s in all) for the run's duration, through
the whole real path: supervisor -> runtime socket -> gateway -> event bus -> Redis Streams -> SSE. One client
reads the fleet stream and measures each line's latency (container and host share the clock). The controller
process's CPU (user + system, from /proc) over the measured window gives the CPU per 1,000 events.

    .venv/bin/python bench/events.py --sandboxes 20 --rate 100 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_controller, percentile

AGENT = """
import json, sys, time
rate, seconds, start = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.01)
tick = 1.0 / 20
n = 0
while time.time() < start + seconds:
    for _ in range(rate // 20):
        print(json.dumps({"t": time.time(), "n": n}), flush=True)
        n += 1
    time.sleep(max(0.0, start + (n / rate) - time.time()))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_stream(url: str, token: str, until: float, latencies: list[float], stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    params = {"kinds": "stdout", "after": "$"}
    with httpx.stream("GET", f"{url}/api/v1/events", params=params, headers=headers, timeout=None) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = json.loads(line[6:])
                sent = json.loads(payload["data"]["line"])["t"]
                latencies.append(time.time() - sent)
            if stop.is_set() or time.time() > until:
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandboxes", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100, help="lines per second per sandbox")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3, help="seconds at the start left out of the figures")
    parser.add_argument("--runtime", choices=["runsc", "runc"], default="runsc", help="the sandboxes' OCI runtime")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "events.json")
    args = parser.parse_args()
    with bench_controller(args.redis_url, FLEETGATE_SANDBOX_RUNTIME=args.runtime) as ctl, ctl.http("admin") as admin:
        start = time.time() + 8
        for _ in range(args.sandboxes):
            command = ["python3", "-c", AGENT, str(args.rate), str(args.seconds), str(start)]
            body = {"image": "fleetgate/python:latest", "command": command, "resources": {"cpus": 0.25}}
            assert admin.post("/api/v1/sandboxes", json=body).status_code == 201
        latencies: list[float] = []
        stop = threading.Event()
        reader = threading.Thread(
            target=read_stream, args=(ctl.url, ctl.admin_token, start + args.seconds + 5, latencies, stop)
        )
        reader.start()
        assert ctl.proc is not None
        while time.time() < start + args.warmup:
            time.sleep(0.01)
        cpu0, seen0, t0 = cpu_seconds(ctl.proc.pid), len(latencies), time.time()
        while time.time() < start + args.seconds:
            time.sleep(0.05)
        cpu1, seen1, t1 = cpu_seconds(ctl.proc.pid), len(latencies), time.time()
        window = latencies[seen0:seen1]
        time.sleep(3)
        stop.set()
        reader.join(15)
    rate = (seen1 - seen0) / (t1 - t0)
    result = {
        "sandboxes": args.sandboxes,
        "target_events_per_s": args.sandboxes * args.rate,
        "measured_events_per_s": round(rate),
        "p50_ms": round(percentile(window, 0.5) * 1000, 1),
        "p99_ms": round(percentile(window, 0.99) * 1000, 1),
        "max_ms": round(max(window) * 1000, 1),
        "controller_cpu_s_per_1000_events": round((cpu1 - cpu0) / max(1, seen1 - seen0) * 1000, 3),
        "events_measured": len(window),
        "events_total": len(latencies),
    }
    goal = "PASS" if result["p99_ms"] < 250 else "FAIL"
    print(f"\nsandboxes under {args.runtime}")
    print(
        f"\n| {'sandboxes':>9} | {'events/s':>8} | p50 ms | p99 ms | max ms | controller CPU s / 1000 events | goal |"
    )
    print(f"| {'-' * 9} | {'-' * 8} | -----: | -----: | -----: | -----------------------------: | ---- |")
    print(
        f"| {result['sandboxes']:>9} | {result['measured_events_per_s']:>8} | {result['p50_ms']:>6} | "
        f"{result['p99_ms']:>6} | {result['max_ms']:>6} | {result['controller_cpu_s_per_1000_events']:>30} | "
        f"p99 < 250 ms: {goal} |"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
