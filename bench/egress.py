"""The egress door's cost, side by side with a direct connection, in one run:

  latency   a 1 KB POST /echo on a kept-alive connection: direct from the host (the baseline), the service path
            from inside a sandbox (http://127.0.0.1:7070/<service>/echo), and the forward proxy from inside a
            sandbox (http://127.0.0.1:PORT/echo through 127.0.0.1:3128); median, p99, and the median added
  download  10 MiB (GET /bytes/10485760) on a kept-alive connection: direct, the service path, the proxy (plain
            HTTP), the proxy (a CONNECT tunnel); MB/s (1 MB = 10^6 bytes)
  stream    a streamed Anthropic /v1/messages call, direct and through the service path: the time to its first
            event, and from its first to its last event against the upstream's own spacing (an answer held back
            to the end would arrive all at once)

Every figure comes from the same stdlib client (CLIENT below): on the host for the baseline, inside the sandbox
through `POST /api/v1/sandboxes/{id}/exec` for the door. The upstream is an asyncio server (h11) in a process of its
own, and the paths take turns in rounds, so the machine's load moves them alike. One more row calls the service door
from the host over the runtime socket, as the sandbox's relay does: no sandbox, so it splits the relay's share from
the controller's.

    .venv/bin/python bench/egress.py --requests 500                    # sandboxes under gVisor
    .venv/bin/python bench/egress.py --requests 500 --runtime runc
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import h11
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_controller, percentile

CLIENT = r"""
import http.client, json, socket, sys, time

spec = json.loads(sys.argv[1])


class RuntimeSocket(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(spec["door"]["socket"])
        self.sock.sendall(spec["door"]["preamble"].encode())


def connect():
    kind = RuntimeSocket if spec.get("door") else http.client.HTTPConnection
    conn = kind(*spec["connect"], timeout=120)
    if spec.get("tunnel"):
        conn.set_tunnel(*spec["tunnel"])
    deadline = time.monotonic() + 30
    while True:
        try:
            conn.connect()
            return conn
        except ConnectionRefusedError:  # a sandbox's doors open once its supervisor has started
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def answer(conn, method, body=None, headers={}):
    conn.request(method, spec["target"], body, headers)
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit("%s %s: %d %s" % (method, spec["target"], response.status, response.read()[:500]))
    return response


def latency(conn):
    body, times = b"x" * spec["size"], []
    for i in range(spec["warmup"] + spec["n"]):
        started = time.perf_counter()
        got = answer(conn, "POST", body, {"content-type": "application/octet-stream"}).read()
        times.append((time.perf_counter() - started) * 1000)
        assert got == body, len(got)
    return times[spec["warmup"]:]


def download(conn):
    view, rates = memoryview(bytearray(1 << 18)), []
    for i in range(spec["warmup"] + spec["n"]):
        started, got = time.perf_counter(), 0
        response = answer(conn, "GET")
        while True:
            n = response.readinto(view)
            if not n:
                break
            got += n
        rates.append(got / (time.perf_counter() - started) / 1e6)
        assert got == spec["size"], got
    return rates[spec["warmup"]:]


def stream(conn):
    messages = [{"role": "user", "content": "hi"}]
    body = json.dumps({"model": "bench", "max_tokens": 64, "stream": True, "messages": messages})
    headers = {"content-type": "application/json", "x-api-key": "placeholder", "anthropic-version": "2023-06-01"}
    runs = []
    for i in range(spec["warmup"] + spec["n"]):
        started, events = time.perf_counter(), []
        response = answer(conn, "POST", body.encode(), headers)
        while True:
            line = response.readline()
            if not line:
                break
            if line.startswith(b"event:"):
                events.append(time.perf_counter())
        assert len(events) == spec["events"], len(events)
        runs.append([(events[0] - started) * 1000, (events[-1] - events[0]) * 1000])
    return runs[spec["warmup"]:]


print(json.dumps({"latency": latency, "download": download, "stream": stream}[spec["mode"]](connect())))
"""

BLOCK = b"x" * (1 << 20)
WORDS = ("Hello", " from", " the", " bench", " model")
EVENTS = len(WORDS) + 3  # message_start, one delta per word, message_delta, message_stop
ALLOW_ALL = {"default": "allow", "rules": []}
MEASURES = ("latency", "download", "stream")
GOAL_ADDED_MS = 2.0  # median added to a 1 KB request, service path and proxy
GOAL_PROXY_MB_S = 200.0  # a download through the proxy, plain or tunnelled


# --- the upstream: the world the sandbox reaches -------------------------------------------------------------------


def upstream(port_to: Connection, gap_s: float) -> None:
    """Serve /echo (the body back), /bytes/N and a streamed /v1/messages on 127.0.0.1 until killed."""

    async def serve() -> None:
        server = await asyncio.start_server(lambda r, w: answer_all(r, w, gap_s), "127.0.0.1", 0)
        port_to.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(serve())


async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gap_s: float) -> None:
    """One kept-alive connection: answer each request until the client closes."""
    conn = h11.Connection(h11.SERVER)
    try:
        while isinstance(request := await next_event(conn, reader), h11.Request):
            body = bytearray()
            while isinstance(event := await next_event(conn, reader), h11.Data):
                body += event.data
            path = request.target.decode()
            if path.startswith("/bytes/"):
                await send_bytes(conn, writer, int(path.rsplit("/", 1)[1]))
            elif path.startswith("/v1/messages"):
                await send_stream(conn, writer, gap_s)
            else:
                head = h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
                writer.write(conn.send(head) + conn.send(h11.Data(data=bytes(body))) + conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except ConnectionError:
        return  # the client went away mid-answer: its measurement failed and says so itself
    finally:
        writer.close()


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(1 << 18))
    return event


async def send_bytes(conn: h11.Connection, writer: asyncio.StreamWriter, size: int) -> None:
    headers = [("content-type", "application/octet-stream"), ("content-length", str(size))]
    writer.write(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
    while size > 0:
        piece = BLOCK[: min(size, len(BLOCK))]
        writer.writelines(conn.send_with_data_passthrough(h11.Data(data=piece)) or [])
        size -= len(piece)
        await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()) or b"")


async def send_stream(conn: h11.Connection, writer: asyncio.StreamWriter, gap_s: float) -> None:
    """The Messages API's event stream, one word every `gap_s` (chunked, as Anthropic sends it)."""
    usage = {"input_tokens": 11, "output_tokens": len(WORDS)}
    writer.write(conn.send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")])) or b"")

    async def event(name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        writer.write(conn.send(h11.Data(data=payload)) or b"")
        await writer.drain()

    await event("message_start", {"message": {"model": "bench", "usage": {**usage, "output_tokens": 1}}})
    for word in WORDS:
        await asyncio.sleep(gap_s)
        await event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
    await event("message_delta", {"usage": {"output_tokens": len(WORDS)}})
    await event("message_stop", {})
    writer.write(conn.send(h11.EndOfMessage()) or b"")


def start_upstream(gap_s: float) -> tuple[multiprocessing.Process, int]:
    ends = multiprocessing.get_context("spawn").Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(target=upstream, args=(ends[1], gap_s), daemon=True)
    process.start()
    if not ends[0].poll(30):
        process.kill()
        raise RuntimeError("the bench upstream did not start within 30 s")
    return process, int(ends[0].recv())


# --- the paths ------------------------------------------------------------------------------------------------------


def plan(port: int, size: int, runtime_socket: dict[str, str]) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """Per measure, per path: where the client runs ("host" or "sandbox") and what it connects to."""
    direct, services, proxy = ["127.0.0.1", port], ["127.0.0.1", 7070], ["127.0.0.1", 3128]
    bytes_path = f"/bytes/{size}"
    return {
        "latency": {
            "direct": ("host", {"connect": direct, "target": "/echo"}),
            "service": ("sandbox", {"connect": services, "target": "/bench/echo"}),
            "proxy": ("sandbox", {"connect": proxy, "target": f"http://127.0.0.1:{port}/echo"}),
            "door": ("host", {"connect": ["runtime", 0], "door": runtime_socket, "target": "/bench/echo"}),
        },
        "download": {
            "direct": ("host", {"connect": direct, "target": bytes_path}),
            "service": ("sandbox", {"connect": services, "target": "/bench" + bytes_path}),
            "proxy": ("sandbox", {"connect": proxy, "target": f"http://127.0.0.1:{port}{bytes_path}"}),
            "tunnel": ("sandbox", {"connect": proxy, "tunnel": ["127.0.0.1", port], "target": bytes_path}),
        },
        "stream": {
            "direct": ("host", {"connect": direct, "target": "/v1/messages"}),
            "service": ("sandbox", {"connect": services, "target": "/claude/v1/messages"}),
        },
    }


def on_host(spec: dict[str, Any]) -> list[Any]:
    command = [sys.executable, "-c", CLIENT, json.dumps(spec)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the client failed on the host ({spec['mode']}, {spec['target']}): {done.stderr}")
    return list(json.loads(done.stdout))


def in_sandbox(admin: httpx.Client, sandbox_id: str, spec: dict[str, Any]) -> list[Any]:
    body = {"command": ["python3", "-c", CLIENT, json.dumps(spec)], "timeout_s": 600}
    result = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json=body, timeout=620).json()
    if result.get("exit_code") != 0:
        raise RuntimeError(f"the client failed in the sandbox ({spec['mode']}, {spec['target']}): {result}")
    return list(json.loads(result["stdout"]))


def measure(admin: httpx.Client, sandbox_id: str, paths: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Every path of every measure, in turns: `--rounds` rounds, each a fresh client and connection per path."""
    counts = {"latency": args.requests, "download": args.downloads, "stream": args.streams}
    warmups = {"latency": args.warmup, "download": 1, "stream": 1}
    samples: dict[str, dict[str, list[Any]]] = {m: {p: [] for p in paths[m]} for m in MEASURES}
    for _ in range(args.rounds):
        for mode in MEASURES:
            for name, (where, spec) in paths[mode].items():
                run = {**spec, "mode": mode, "n": math.ceil(counts[mode] / args.rounds), "warmup": warmups[mode]}
                run.update(size=args.size if mode == "latency" else args.download_bytes, events=EVENTS)
                got = on_host(run) if where == "host" else in_sandbox(admin, sandbox_id, run)
                samples[mode][name].extend(got)
    return samples


def register_services(admin: httpx.Client, upstream_url: str) -> None:
    """`bench`, a plain HTTP service whose secret goes in x-bench-key, and `claude`, a model, both on the upstream."""
    bench = {"name": "bench", "kind": "http", "secret": "s3cret", "header": "x-bench-key"}
    claude = {"name": "claude", "kind": "anthropic", "secret": "sk-ant-bench"}
    for service in (bench, claude):
        answer = admin.post("/api/v1/services", json={**service, "upstream": upstream_url})
        assert answer.status_code in (200, 201), answer.text


# --- the table ------------------------------------------------------------------------------------------------------

LATENCY_ROWS = {
    "direct": "{size} request, direct from the host (baseline)",
    "service": "{size} request, service path in the sandbox",
    "proxy": "{size} request, forward proxy in the sandbox",
    "door": "{size} request, service door from the host (no sandbox)",
}
DOWNLOAD_ROWS = {
    "direct": "{size} download, direct from the host (baseline)",
    "service": "{size} download, service path in the sandbox",
    "proxy": "{size} download, proxy plain HTTP in the sandbox",
    "tunnel": "{size} download, proxy CONNECT tunnel in the sandbox",
}
STREAM_ROWS = {"direct": "streamed message, direct from the host", "service": "streamed message, service path"}


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def size_label(n: int) -> str:
    """1024 -> "1 KB", 10485760 -> "10 MiB" (the sizes the README quotes)."""
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KB"


def latency_table(samples: dict[str, list[float]], size: int) -> list[dict[str, Any]]:
    base = percentile(samples["direct"], 0.5)
    rows = []
    for name, label in LATENCY_ROWS.items():
        median, p99 = percentile(samples[name], 0.5), percentile(samples[name], 0.99)
        goal = {"direct": "baseline", "door": "diagnostic: the door without the sandbox's relay"}.get(name)
        row = {
            "what": label.format(size=size_label(size)),
            "median_ms": median,
            "p99_ms": p99,
            "added_ms": median - base,
        }
        added_goal = f"added < {GOAL_ADDED_MS:g} ms: {verdict(median - base < GOAL_ADDED_MS)}"
        rows.append({**row, "runs": len(samples[name]), "goal": goal or added_goal})
    return rows


def download_table(samples: dict[str, list[float]], size: int) -> list[dict[str, Any]]:
    rows = []
    for name, label in DOWNLOAD_ROWS.items():
        rates = samples[name]
        goal = {"direct": "baseline", "service": "-"}.get(name)
        proxy_goal = f">= {GOAL_PROXY_MB_S:g} MB/s: {verdict(percentile(rates, 0.5) >= GOAL_PROXY_MB_S)}"
        row = {
            "what": label.format(size=size_label(size)),
            "median_mb_s": percentile(rates, 0.5),
            "min_mb_s": min(rates),
            "max_mb_s": max(rates),
        }
        rows.append({**row, "runs": len(rates), "goal": goal or proxy_goal})
    return rows


def stream_table(samples: dict[str, list[list[float]]], gap_s: float) -> list[dict[str, Any]]:
    spacing = len(WORDS) * gap_s * 1000
    rows = []
    for name, label in STREAM_ROWS.items():
        first = [run[0] for run in samples[name]]
        spread = percentile([run[1] for run in samples[name]], 0.5)
        incremental = abs(spread - spacing) < 0.2 * spacing
        row = {"what": label, "first_event_ms": percentile(first, 0.5), "p99_ms": percentile(first, 0.99)}
        row.update(first_to_last_ms=spread, upstream_ms=spacing, runs=len(first))
        rows.append({**row, "goal": f"incremental: {verdict(incremental)}"})
    return rows


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """A Markdown table, numbers right-aligned: `median_mb_s` is headed "median MB/s"."""
    keys = [k for k in rows[0] if k not in ("what", "goal")]
    heads = [k.replace("_mb_s", " MB/s").replace("_", " ") for k in keys]
    print(f"\n{title}\n\n| {'what':<54} | " + " | ".join(heads) + " | goal |")
    print(f"| {'-' * 54} | " + " | ".join("-" * (len(h) - 1) + ":" for h in heads) + " | ---- |")
    for row in rows:
        cells = [
            f"{row[k]:>{len(h)}.2f}" if isinstance(row[k], float) else f"{row[k]:>{len(h)}}"
            for k, h in zip(keys, heads, strict=True)
        ]
        print(f"| {row['what']:<54} | " + " | ".join(cells) + f" | {row['goal']} |")


# --- the run --------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per path")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per connection first")
    parser.add_argument("--size", type=int, default=1024, help="request (and answer) body bytes")
    parser.add_argument("--downloads", type=int, default=10, help="timed downloads per path")
    parser.add_argument("--download-bytes", type=int, default=10 << 20)
    parser.add_argument("--streams", type=int, default=10, help="timed streamed model calls per path")
    parser.add_argument("--gap-ms", type=float, default=100, help="the upstream's spacing between streamed words")
    parser.add_argument("--rounds", type=int, default=5, help="turns the paths take")
    parser.add_argument("--runtime", choices=["runsc", "runc"], default="runsc", help="the sandboxes' OCI runtime")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--json", type=Path, help="where the figures go (default: results/egress-RUNTIME.json)")
    args = parser.parse_args()
    args.json = args.json or Path(__file__).parent / "results" / f"egress-{args.runtime}.json"
    process, port = start_upstream(args.gap_ms / 1000)
    settings = {
        "FLEETGATE_SANDBOX_RUNTIME": args.runtime,
        "FLEETGATE_EGRESS_ALLOW": f"127.0.0.1:{port}",
        "FLEETGATE_EGRESS_CONNECTIONS_PER_SANDBOX": str(10**9),  # the budget is checked, never reached
        "FLEETGATE_EGRESS_BYTES_PER_SANDBOX": str(1 << 50),
    }
    try:
        with (
            bench_controller(args.redis_url, **settings) as ctl,
            ctl.http("admin") as admin,
            ctl.http("operator") as operator,
        ):
            register_services(admin, f"http://127.0.0.1:{port}")
            body = {"image": "fleetgate/python:latest", "policy": ALLOW_ALL}
            sandbox = operator.post("/api/v1/sandboxes", json=body).json()
            token = json.loads((ctl.home / "sandboxes" / sandbox["id"] / "sandbox.json").read_text())["token"]
            preamble = f"FLEETGATE-EGRESS/1 service {sandbox['id']}\r\nAuthorization: Bearer {token}\r\n\r\n"
            runtime_socket = {"socket": str(ctl.home / "gateway" / "runtime.sock"), "preamble": preamble}
            samples = measure(admin, sandbox["id"], plan(port, args.download_bytes, runtime_socket), args)
    finally:
        process.kill()
    tables = {
        "latency": latency_table(samples["latency"], args.size),
        "download": download_table(samples["download"], args.download_bytes),
        "stream": stream_table(samples["stream"], args.gap_ms / 1000),
    }
    print(f"\nsandboxes under {args.runtime}, one run, the paths in {args.rounds} interleaved rounds")
    print_table("Added latency (ms)", tables["latency"])
    print_table("Download throughput (MB/s, 1 MB = 10^6 bytes)", tables["download"])
    print_table("Streamed model answer (ms)", tables["stream"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runtime": args.runtime, **tables}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
