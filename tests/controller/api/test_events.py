"""Live events over SSE: ids are stream ids, Last-Event-ID resumes with no gap and no duplicate (across a
controller restart, and past the stream's trim), and a client that stops reading holds nothing up."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import redis

from controller.names import Keys
from tests.conftest import Controller, wait_for

COUNTER = "import sys, time\nfor i in range({n}):\n    print('line', i, flush=True)\n    time.sleep({pause})\n"


def sse(
    controller: Controller, params: dict[str, Any], last_id: str | None = None, timeout: float = 30
) -> Iterator[dict[str, Any]]:
    """Events from /api/v1/events as dicts (with their SSE id), until the caller stops iterating."""
    headers = {"Authorization": f"Bearer {controller.admin_token}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    with httpx.stream("GET", f"{controller.url}/api/v1/events", params=params, headers=headers,
                      timeout=httpx.Timeout(timeout)) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                event["sse_id"] = line[4:]
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event.update(json.loads(line[6:]))
            elif not line and "kind" in event:
                yield event
                event = {}


def lines_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["line"] for e in events if e["kind"] == "stdout"]


def test_events_carry_stream_ids_and_filter_by_kind(controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(command=["python3", "-c", COUNTER.format(n=5, pause=0)])
    seen: list[dict[str, Any]] = []
    for event in sse(controller, {"sandbox": sandbox["id"], "after": "0", "kinds": "stdout"}):
        seen.append(event)
        if len(seen) == 5:
            break
    assert lines_of(seen) == [f"line {i}" for i in range(5)]
    assert all(e["sse_id"] == e["id"] and e["event"] == "stdout" for e in seen)
    ids = [tuple(int(p) for p in e["id"].split("-")) for e in seen]
    assert ids == sorted(ids)


def test_resume_with_last_event_id_across_a_controller_restart_loses_nothing(
    controller: Controller, sandbox_factory: Any
) -> None:
    total = 120
    sandbox = sandbox_factory(command=["python3", "-c", COUNTER.format(n=total, pause=0.05)])
    params = {"sandbox": sandbox["id"], "after": "0", "kinds": "stdout"}
    first: list[dict[str, Any]] = []
    for event in sse(controller, params):
        first.append(event)
        if len(first) == 20:
            break
    controller.restart()  # the agent keeps printing; its supervisor holds the lines until the gateway is back
    rest: list[dict[str, Any]] = []
    for event in sse(controller, params, last_id=first[-1]["sse_id"]):
        rest.append(event)
        if len(first) + len(rest) == total:
            break
    assert lines_of(first + rest) == [f"line {i}" for i in range(total)]  # all, in order, none twice


def test_resume_past_the_streams_trim_is_served_from_the_database(
    controller: Controller, sandbox_factory: Any, redis_url: str
) -> None:
    sandbox = sandbox_factory(command=["python3", "-c", COUNTER.format(n=30, pause=0)])
    params = {"sandbox": sandbox["id"], "after": "0", "kinds": "stdout"}
    first: list[dict[str, Any]] = []
    for event in sse(controller, params):
        first.append(event)
        if len(first) == 30:
            break
    # Trim the stream to its last 5 entries, as MAXLEN does under load: ids 1..25 now exist only in the database.
    redis.Redis.from_url(redis_url).xtrim(Keys(controller.instance).sandbox_stream(sandbox["id"]), maxlen=5)
    resumed: list[dict[str, Any]] = []
    for event in sse(controller, params, last_id=first[4]["sse_id"]):
        resumed.append(event)
        if len(resumed) == 25:
            break
    assert lines_of(resumed) == [f"line {i}" for i in range(5, 30)]


def test_a_bad_last_event_id_is_a_clear_422(controller: Controller) -> None:
    response = httpx.get(
        f"{controller.url}/api/v1/events",
        headers={"Authorization": f"Bearer {controller.admin_token}", "Last-Event-ID": "yesterday"},
    )
    assert response.status_code == 422
    assert "not an event id" in response.json()["detail"]


def test_a_slow_consumer_does_not_stall_the_producer_or_other_clients(
    controller: Controller, sandbox_factory: Any
) -> None:
    # A client that connects and never reads, with a tiny receive buffer.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", controller.port))
    request = (
        f"GET /api/v1/events?after=$ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {controller.admin_token}\r\n\r\n"
    )
    stalled.sendall(request.encode())
    time.sleep(0.5)
    total = 10_000  # 2,000 lines a second for 5 s, with the stalled client connected throughout
    received: list[float] = []
    latency: list[float] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        for event in sse(controller, {"kinds": "stdout", "after": "$"}, timeout=120):
            latency.append(time.time() - float(event["data"]["ts"]))
            received.append(time.time())
            if len(received) == total:
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    started.wait()
    time.sleep(0.5)
    begun = time.monotonic()
    script = (
        "import sys, time\n"
        f"for i in range({total}):\n"
        "    print('x' * 100, i)\n"
        "    if i % 200 == 199:\n"
        "        sys.stdout.flush()\n"
        "        time.sleep(0.1)\n"
    )
    sandbox = sandbox_factory(command=["python3", "-c", script])
    done = wait_for(
        lambda: (s := httpx.get(f"{controller.url}/api/v1/sandboxes/{sandbox['id']}",
                                headers={"Authorization": f"Bearer {controller.admin_token}"}).json())["status"]
        == "exited" and s,
        timeout=120,
        what="the chatty agent to finish",
    )  # fmt: skip
    produced_in = time.monotonic() - begun
    thread.join(60)
    assert done["exit_code"] == 0
    assert len(received) == total  # the reading client got everything, live
    assert produced_in < 60
    assert sorted(latency)[len(latency) // 2] < 0.5
    stalled.close()


def test_a_client_whose_sends_stall_is_dropped_and_its_reads_stop(monkeypatch: Any) -> None:
    """Unit test of the drop, on the ASGI level: a send that never completes ends the stream."""
    import asyncio

    from controller.api import events as module

    monkeypatch.setattr(module, "SEND_TIMEOUT_S", 0.2)
    pulled: list[int] = []
    closed = asyncio.Event()

    async def frames() -> Any:
        try:
            for i in range(10_000):
                pulled.append(i)
                yield f"data: {i}\n\n"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) > 3:  # the client's buffers are full from here on
            await asyncio.sleep(3600)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def run() -> None:
        await asyncio.wait_for(module.EventStream(frames())({"type": "http"}, receive, send), 5)

    # A thread of its own: the browser tests keep Playwright's loop running on the main thread.
    failure: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(failure, lambda: asyncio.run(run())))
    worker.start()
    worker.join(10)
    assert not failure, failure
    assert len(pulled) < 10  # it stopped reading as soon as the client stopped taking
    assert closed.is_set()
    assert not any(m.get("more_body") is False for m in sent)  # left unfinished: the server closes the connection


def _capture(failures: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as e:  # handed to the test thread
        failures.append(e)


def test_metrics_expose_the_fleet(controller: Controller, sandbox_factory: Any) -> None:
    sandbox_factory()
    headers = {"Authorization": f"Bearer {controller.token('viewer')}"}
    text = wait_for(
        lambda: "fleetgate_events_total" in (t := httpx.get(f"{controller.url}/metrics", headers=headers).text) and t,
        timeout=10,
        what="metrics",
    )
    running = next(line for line in text.splitlines() if line.startswith('fleetgate_sandboxes{status="running"}'))
    assert float(running.split()[-1]) >= 1
    assert 'fleetgate_approvals_pending{kind="action"}' in text
    assert 'fleetgate_decision_latency_seconds_bucket{kind="action",le="+Inf"}' in text
    events = next(line for line in text.splitlines() if line.startswith("fleetgate_events_total"))
    assert float(events.split()[-1]) > 0
    assert httpx.get(f"{controller.url}/metrics").status_code == 401
