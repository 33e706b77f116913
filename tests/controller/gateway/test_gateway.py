"""The runtime gateway: what the supervisor reports, and what a sandbox token can never do."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import Controller, wait_for


def run(admin: httpx.Client, sandbox_id: str, *command: str) -> dict[str, Any]:
    response = admin.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": list(command)})
    assert response.status_code == 200, response.text
    return dict(response.json())


def sandbox_secret(controller: Controller, sandbox_id: str) -> str:
    creds = json.loads((controller.home / "sandboxes" / sandbox_id / "sandbox.json").read_text())
    return str(creds["token"])


def test_supervisor_reports_output_lines_exit_status_and_heartbeats(admin: httpx.Client, sandbox_factory: Any) -> None:
    script = "for i in 1 2 3; do echo out-$i; echo err-$i >&2; done; sleep 2; exit 7"
    sandbox = sandbox_factory(command=["sh", "-c", script])
    done = wait_for(
        lambda: (s := admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json())["status"] == "exited" and s,
        timeout=30,
        what="the command to finish",
    )
    assert done["exit_code"] == 7
    assert done["last_heartbeat_at"] is not None
    lines = admin.get(f"/api/v1/sandboxes/{sandbox['id']}/logs").json()["items"]
    stdout = [item["line"] for item in lines if item["stream"] == "stdout"]
    stderr = [item["line"] for item in lines if item["stream"] == "stderr"]
    assert stdout == ["out-1", "out-2", "out-3"]
    assert stderr == ["err-1", "err-2", "err-3"]
    after = admin.get(f"/api/v1/sandboxes/{sandbox['id']}/logs", params={"after": lines[2]["id"]}).json()["items"]
    assert [item["id"] for item in after] == [item["id"] for item in lines[3:]]


def test_idle_sandbox_keeps_sending_heartbeats(admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    first = wait_for(
        lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["last_heartbeat_at"],
        timeout=10,
        what="a first heartbeat",
    )
    wait_for(
        lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["last_heartbeat_at"] != first,
        timeout=10,
        what="a later heartbeat",
    )


def test_sandbox_token_cannot_call_the_management_api(controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    secret = sandbox_secret(controller, sandbox["id"])
    with controller.http(token=secret) as client:
        for method, path in (("GET", "/api/v1/sandboxes"), ("GET", f"/api/v1/sandboxes/{sandbox['id']}")):
            response = client.request(method, path)
            assert response.status_code == 401, path
            assert "sandbox token" in response.json()["detail"]
        response = client.post("/api/v1/tokens", json={"name": "evil", "role": "admin"})
        assert response.status_code == 401


GATEWAY_PROBE = """
import json, sys
from agent_runtime.client import Gateway, GatewayError, load_credentials
creds = load_credentials()
results = {}
def probe(name, gateway, method, route):
    try:
        gateway.call(method, route, retry_for=0)
        results[name] = 200
    except GatewayError as e:
        results[name] = e.status
own = Gateway(creds["sandbox_id"], creds["token"])
probe("own", own, "GET", "")
probe("other_heartbeat", Gateway(sys.argv[1], creds["token"]), "POST", "/heartbeat")
probe("other_output", Gateway(sys.argv[1], creds["token"]), "POST", "/output")
own.sandbox_id = "../../../api/v1"
probe("management", own, "GET", "/sandboxes")
print(json.dumps(results))
"""


def test_sandbox_token_cannot_reach_another_sandboxs_routes(
    controller: Controller, admin: httpx.Client, sandbox_factory: Any
) -> None:
    mine = sandbox_factory()
    other = sandbox_factory()
    result = run(admin, mine["id"], "python3", "-c", GATEWAY_PROBE, other["id"])
    assert result["exit_code"] == 0, result["stderr"]
    statuses = json.loads(result["stdout"])
    assert statuses["own"] == 200
    assert statuses["other_heartbeat"] == 403
    assert statuses["other_output"] == 403
    assert statuses["management"] in (404, 422)


def test_user_tokens_do_not_work_on_the_gateway(controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    transport = httpx.HTTPTransport(uds=str(controller.home / "gateway" / "runtime.sock"))
    with httpx.Client(transport=transport, base_url="http://gateway") as client:
        response = client.get(
            f"/runtime/v1/sandboxes/{sandbox['id']}", headers={"Authorization": f"Bearer {controller.admin_token}"}
        )
        assert response.status_code == 401
        assert client.get("/api/v1/sandboxes").status_code == 404


def test_removed_sandbox_token_is_retired(controller: Controller, admin: httpx.Client, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    secret = sandbox_secret(controller, sandbox["id"])
    admin.delete(f"/api/v1/sandboxes/{sandbox['id']}")
    transport = httpx.HTTPTransport(uds=str(controller.home / "gateway" / "runtime.sock"))
    with httpx.Client(transport=transport, base_url="http://gateway") as client:
        response = client.get(f"/runtime/v1/sandboxes/{sandbox['id']}", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401
