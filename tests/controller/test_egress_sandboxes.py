"""Egress from real sandboxes (gVisor, network none): the model service with its secret added on the way out, the
forward proxy with its guard and the gate, budgets, and bad input through either door.

The outside world is servers this module starts on loopback; the controller under test opens exactly those
(FLEETGATE_EGRESS_ALLOW) and nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Controller, make_controller, running, wait_for
from tests.upstreams import ModelServer

SECRET = "sk-ant-api03-REAL-KEY-never-in-a-sandbox-7f3a"
BUDGET = 3

STREAM = """
import json, os, sys, time, urllib.request
base = os.environ["ANTHROPIC_BASE_URL"]
body = json.dumps({"model": "claude-test", "max_tokens": 50, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
request = urllib.request.Request(base + "/v1/messages?beta=true", data=body, method="POST", headers={
    "x-api-key": os.environ["ANTHROPIC_API_KEY"], "content-type": "application/json",
    "anthropic-version": "2023-06-01"})
arrivals = []
with urllib.request.urlopen(request, timeout=60) as answer:
    for line in answer:
        if line.startswith(b"event:"):
            arrivals.append((time.monotonic(), line.decode().strip()))
print(json.dumps({"base": base, "key": os.environ["ANTHROPIC_API_KEY"], "events": arrivals}))
"""

FETCH = """
import json, os, sys, urllib.error, urllib.request
for name in ("NO_PROXY", "no_proxy"):  # the test's servers are on loopback, which NO_PROXY sends around the proxy
    os.environ.pop(name, None)
out = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            out.append({"url": url, "status": answer.status, "body": answer.read().decode(errors="replace")[:300]})
    except urllib.error.HTTPError as e:
        out.append({"url": url, "status": e.code, "body": e.read().decode(errors="replace")[:500]})
    except Exception as e:
        out.append({"url": url, "status": 0, "body": repr(e)[:500]})
print(json.dumps(out))
"""

TUNNEL = """
import json, socket, sys
out = []
for where in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", 3128), timeout=120)
    s.sendall(("CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" % (where, where)).encode())
    out.append({"to": where, "answer": s.recv(4096).decode(errors="replace")})
    s.close()
print(json.dumps(out))
"""

SECRET_SEARCH = """
import os, sys
secret = sys.argv[1][::-1].encode()  # given reversed, so this script's own command line does not hold it
found = []
for name in ("environ", "cmdline"):
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/%s/%s" % (pid, name), "rb") as f:
                if secret in f.read():
                    found.append("/proc/%s/%s" % (pid, name))
        except OSError:
            pass
for top in ("/run", "/opt", "/tmp", "/workspace", "/etc", "/home", "/var"):
    for root, dirs, files in os.walk(top):
        for f in files:
            path = os.path.join(root, f)
            try:
                with open(path, "rb") as handle:
                    if secret in handle.read(50 << 20):
                        found.append(path)
            except OSError:
                pass
print("FOUND" if found else "CLEAN", found)
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ModelServer]]:
    servers = {name: ModelServer(gap_s=0.3).start() for name in ("model", "allowed", "denied", "asked")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def egress(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    redis_url: str,
    python_image: str,
    upstreams: dict[str, ModelServer],
) -> Iterator[Controller]:
    opened = ",".join(f"127.0.0.1:{s.port}" for name, s in upstreams.items() if name != "model")
    ctl = make_controller(
        tmp_path_factory.mktemp("egress"),
        redis_url,
        FLEETGATE_EGRESS_ALLOW=opened,
        FLEETGATE_POOL_SIZE="0",
    )
    with running(ctl, docker_client):
        with ctl.http() as admin:
            made = admin.post(
                "/api/v1/services",
                json={"name": "claude", "kind": "anthropic", "upstream": upstreams["model"].url, "secret": SECRET},
            )
            assert made.status_code == 201, made.text
        yield ctl


@pytest.fixture
def admin(egress: Controller) -> Iterator[httpx.Client]:
    with egress.http() as client:
        yield client


@pytest.fixture
def sandbox(admin: httpx.Client, upstreams: dict[str, ModelServer]) -> Iterator[str]:
    policy = {
        "default": "ask",
        "rules": [
            {"tool": "model.request", "decision": "allow"},
            {"tool": "http.request", "args": {"port": upstreams["allowed"].port}, "decision": "allow"},
            {"tool": "net.connect", "args": {"port": upstreams["allowed"].port}, "decision": "allow"},
            {
                "tool": "http.request",
                "args": {"port": upstreams["denied"].port},
                "decision": "deny",
                "message": "that server is off limits for agents",
            },
        ],
    }
    made = admin.post("/api/v1/sandboxes", json={"image": "fleetgate/python:latest", "policy": policy})
    assert made.status_code == 201, made.text
    sandbox_id = made.json()["id"]
    yield sandbox_id
    admin.delete(f"/api/v1/sandboxes/{sandbox_id}")


def run(admin: httpx.Client, sandbox_id: str, script: str, *args: str, timeout_s: float = 60) -> str:
    answer = admin.post(
        f"/api/v1/sandboxes/{sandbox_id}/exec",
        json={"command": ["python3", "-c", script, *args], "timeout_s": timeout_s},
        timeout=timeout_s + 30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["exit_code"] == 0, body
    return str(body["stdout"])


def actions(admin: httpx.Client, sandbox_id: str) -> list[dict[str, Any]]:
    return list(admin.get("/api/v1/actions", params={"sandbox": sandbox_id, "limit": 500}).json()["items"])


def test_a_model_stream_reaches_the_sandbox_as_produced_with_the_key_added_outside(
    admin: httpx.Client, sandbox: str, upstreams: dict[str, ModelServer]
) -> None:
    out = json.loads(run(admin, sandbox, STREAM))
    assert out["base"] == "http://127.0.0.1:7070/claude"
    assert out["key"] != SECRET
    assert out["events"][0][1] == "event: message_start"
    deltas = [t for t, e in out["events"] if e == "event: content_block_delta"]
    assert len(deltas) == 5
    assert deltas[-1] - deltas[0] > 4 * 0.3 * 0.8  # spaced as the server produced them, not held to the end
    seen = upstreams["model"].seen[-1]
    assert seen.headers["x-api-key"] == SECRET
    call = next(a for a in actions(admin, sandbox) if a["tool"] == "model.request")
    assert call["args"]["service"] == "claude"
    assert call["args"]["model"] == "claude-test"
    assert call["status"] == "allowed"


def test_the_secret_appears_nowhere_a_sandbox_or_a_person_can_read(
    egress: Controller, admin: httpx.Client, sandbox: str, docker_client: Any
) -> None:
    run(admin, sandbox, STREAM)
    assert run(admin, sandbox, SECRET_SEARCH, SECRET[::-1]).startswith("CLEAN")
    container = admin.get(f"/api/v1/sandboxes/{sandbox}").json()["container_id"]
    assert SECRET not in json.dumps(docker_client.api.inspect_container(container))
    readable = [
        admin.get(path).text
        for path in (
            f"/api/v1/sandboxes/{sandbox}",
            f"/api/v1/actions?sandbox={sandbox}",
            "/api/v1/audit?limit=1000",
            "/api/v1/services",
            "/api/v1/approvals",
        )
    ]
    readable.append(egress.cli("sandbox", "logs", sandbox).stdout)
    readable.append(_stream_text(egress, sandbox))
    for text in readable:
        assert SECRET not in text
    assert b"REAL-KEY" not in (egress.home / "fleetgate.db").read_bytes()


def test_the_proxy_lets_allowed_through_refuses_denied_with_a_reason_and_guards_internal_addresses(
    egress: Controller, admin: httpx.Client, sandbox: str, upstreams: dict[str, ModelServer]
) -> None:
    allowed, denied = upstreams["allowed"], upstreams["denied"]
    targets = [
        f"{allowed.url}/bytes/2048",
        f"{denied.url}/bytes/10",
        f"http://127.0.0.1:{egress.port}/healthz",  # the controller's own API
        "http://127.0.0.1:6379/",  # Redis
        "http://localhost:8080/",  # a name for loopback
        "http://2130706433:80/",  # another spelling of 127.0.0.1
        "http://10.1.2.3/",
        "http://172.17.0.1:2375/",  # the Docker bridge
        "http://169.254.169.254/latest/meta-data/",
    ]
    results = json.loads(run(admin, sandbox, FETCH, *targets))
    assert results[0]["status"] == 200, results[0]
    assert len(results[0]["body"]) == 300  # the first 300 of 2048 bytes
    assert results[1]["status"] == 403
    assert "that server is off limits for agents" in results[1]["body"]
    for refused in results[2:]:
        assert refused["status"] == 403, refused
        assert "sandboxes may not reach it" in refused["body"], refused
    tunnels = json.loads(run(admin, sandbox, TUNNEL, f"127.0.0.1:{egress.port}", "localhost:6379", "10.0.0.1:22"))
    for tunnel in tunnels:
        assert tunnel["answer"].startswith("HTTP/1.1 403"), tunnel
    recorded = actions(admin, sandbox)
    assert sum(1 for a in recorded if a["decided_by"] == "guard") == len(targets) - 2 + len(tunnels)
    allowed_call = next(a for a in recorded if a["tool"] == "http.request" and a["status"] == "allowed")
    wait_for(lambda: next(a for a in actions(admin, sandbox) if a["id"] == allowed_call["id"])["result"],
             what="the allowed call's bytes")  # fmt: skip
    result = next(a for a in actions(admin, sandbox) if a["id"] == allowed_call["id"])["result"]
    assert result["bytes_in"] >= 2048


def test_an_ask_holds_the_connection_until_approved_and_a_grant_covers_the_next(
    admin: httpx.Client, sandbox: str, upstreams: dict[str, ModelServer]
) -> None:
    url = f"{upstreams['asked'].url}/bytes/64"
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(run(admin, sandbox, FETCH, url, timeout_s=120)))
    thread.start()
    pending = wait_for(
        lambda: admin.get("/api/v1/approvals", params={"status": "pending"}).json()["items"], what="the ask"
    )
    assert pending[0]["sandbox_id"] == sandbox
    time.sleep(0.5)
    assert not out  # the connection is held while a person decides
    decided = admin.post(
        f"/api/v1/approvals/{pending[0]['id']}/decision", json={"decision": "approve", "remember": "sandbox"}
    )
    assert decided.status_code == 200, decided.text
    thread.join(60)
    assert json.loads(out[0])[0]["status"] == 200
    again = json.loads(run(admin, sandbox, FETCH, url))
    assert again[0]["status"] == 200
    latest = [a for a in actions(admin, sandbox) if a["tool"] == "http.request"]
    assert max(latest, key=lambda a: a["id"])["decided_by"] == "grant"


@pytest.fixture
def budgeted(admin: httpx.Client) -> Iterator[str]:
    """A sandbox with a model request budget of its own."""
    body = {"image": "fleetgate/python:latest", "budget": {"model_requests": BUDGET}}
    made = admin.post("/api/v1/sandboxes", json=body)
    assert made.status_code == 201, made.text
    yield made.json()["id"]
    admin.delete(f"/api/v1/sandboxes/{made.json()['id']}")


def test_past_its_request_budget_the_agent_reads_why_and_a_person_is_asked(
    admin: httpx.Client, budgeted: str, upstreams: dict[str, ModelServer]
) -> None:
    sandbox = budgeted
    calls = BUDGET + 1
    script = (
        "import json, os, urllib.error, urllib.request\n"
        "out = []\n"
        f"for i in range({calls}):\n"
        "    r = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', method='POST',\n"
        "        data=b'{\"model\": \"m\"}', headers={'content-type': 'application/json'})\n"
        "    try:\n"
        "        out.append([urllib.request.urlopen(r, timeout=120).status, ''])\n"
        "    except urllib.error.HTTPError as e:\n"
        "        out.append([e.code, json.loads(e.read())['error']['message']])\n"
        "print(json.dumps(out))\n"
    )
    before = len(upstreams["model"].seen)
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(run(admin, sandbox, script, timeout_s=120)))
    thread.start()
    escalation = wait_for(
        lambda: [
            a
            for a in admin.get("/api/v1/approvals", params={"status": "pending"}).json()["items"]
            if a["kind"] == "escalation" and a["sandbox_id"] == sandbox
        ],
        what="the budget escalation",
    )[0]
    assert "model request budget is spent" in escalation["summary"]
    refused = [a for a in actions(admin, sandbox) if a["decided_by"] == "budget"]
    assert len(refused) == 1
    # The escalation paused the sandbox; resuming it lets the agent read its refusal.
    assert admin.post(f"/api/v1/approvals/{escalation['id']}/decision", json={"decision": "approve"}).status_code == 200
    thread.join(120)
    statuses = json.loads(out[0])
    assert [s for s, _ in statuses] == [200] * BUDGET + [429]
    assert f"model request budget is spent ({BUDGET} of {BUDGET})" in statuses[-1][1]
    assert len(upstreams["model"].seen) - before == BUDGET
    # The person raises the budget, and the agent's next call goes through.
    raised = admin.put(f"/api/v1/sandboxes/{sandbox}/budget", json={"model_requests": BUDGET + 1})
    assert raised.status_code == 200, raised.text
    again = json.loads(run(admin, sandbox, script.replace(f"range({calls})", "range(1)")))
    assert again == [[200, ""]]


BAD_INPUT = """
import json, socket
out = {}
for name, port, data in (
    ("garbage-service", 7070, b"\\x00\\x01 NOT HTTP AT ALL\\r\\n\\r\\n"),
    ("garbage-proxy", 3128, b"GET\\r\\n\\r\\n"),
    ("relative-proxy", 3128, b"GET /not-absolute HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"),
    ("huge-header", 7070, b"GET /claude/x HTTP/1.1\\r\\nX-Big: " + b"a" * 200000 + b"\\r\\n\\r\\n"),
    ("huge-body", 7070, b"POST /claude/v1/messages HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 40000000\\r\\n\\r\\n"),
):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        s.sendall(data)
    except OSError:
        pass
    try:
        out[name] = s.recv(4096).decode(errors="replace")
    except OSError as e:
        out[name] = repr(e)
    s.close()
print(json.dumps(out))
"""


def test_bad_input_through_either_door_gets_a_clear_error_and_the_doors_keep_serving(
    admin: httpx.Client, sandbox: str
) -> None:
    out = json.loads(run(admin, sandbox, BAD_INPUT))
    for name in ("garbage-service", "garbage-proxy", "relative-proxy", "huge-header"):
        assert out[name].startswith("HTTP/1.1 4"), (name, out[name])
    assert "absolute http:// URL" in out["relative-proxy"]
    assert out["huge-body"].startswith("HTTP/1.1 413"), out["huge-body"]
    stream = json.loads(run(admin, sandbox, STREAM))
    assert len(stream["events"]) == 8


def _stream_text(ctl: Controller, sandbox_id: str, quiet_s: float = 2.0) -> str:
    """Everything the sandbox's event stream holds, from the start, as raw text."""
    chunks: list[str] = []
    headers = {"Authorization": f"Bearer {ctl.admin_token}", "Last-Event-ID": "0-0"}
    try:
        with httpx.stream("GET", f"{ctl.url}/api/v1/events", params={"sandbox": sandbox_id}, headers=headers,
                          timeout=httpx.Timeout(quiet_s)) as response:  # fmt: skip
            for text in response.iter_text():
                chunks.append(text)
    except httpx.ReadTimeout:
        pass
    text = "".join(chunks)
    assert "event: action" in text  # the stream was really read
    return text
