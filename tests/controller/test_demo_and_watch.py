"""`fleetgate demo` and `fleetgate watch`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx

from tests.conftest import FLEETGATE, Controller, wait_for


def test_demo_agents_read_and_test_freely_get_refused_a_payment_and_wait_for_a_person(
    controller: Controller, admin: httpx.Client
) -> None:
    out = controller.cli("demo", "--count", "1", "--ttl", "600").stdout
    sandbox_id = next(word.rstrip(",") for word in out.split() if word.startswith("sb_"))
    item = wait_for(
        lambda: (items := admin.get("/api/v1/approvals", params={"sandbox": sandbox_id}).json()["items"]) and items[0],
        timeout=60,
        what="the demo agent to ask to push",
    )
    assert item["action"]["tool"] == "git.push"
    assert item["action"]["args"] == {"remote": "demo-origin", "branch": "main"}
    origin = controller.home / "demo" / "origin.git"
    assert f"git --git-dir {origin} log" in out
    assert not (origin / "refs" / "heads" / "main").exists()  # nothing is pushed before a person approves
    actions = admin.get("/api/v1/actions", params={"sandbox": sandbox_id}).json()["items"]
    outcomes = {(a["tool"], a["status"]) for a in actions}
    assert ("read_file", "allowed") in outcomes
    assert ("payment.charge", "denied") in outcomes
    tests = next(a for a in actions if a["tool"] == "shell" and "unittest" in a["args"]["command"])
    assert tests["status"] == "allowed"
    # A person approves the push (the demo agents run as demo-operator, so the admin may), then the email.
    assert admin.post(f"/api/v1/approvals/{item['id']}/decision", json={"decision": "approve"}).status_code == 200
    email = wait_for(
        lambda: next((a for a in admin.get("/api/v1/approvals", params={"sandbox": sandbox_id}).json()["items"]
                      if a["action"]["tool"] == "email.send"), None),
        timeout=60,
        what="the email to be asked for",
    )  # fmt: skip
    admin.post(f"/api/v1/approvals/{email['id']}/decision", json={"decision": "approve"})
    logs = wait_for(
        lambda: "[agent] done" in (t := controller.cli("sandbox", "logs", sandbox_id).stdout) and t,
        timeout=60,
        what="the demo agent to finish",
    )
    assert "payment refused: payments over 100 need a purchase order" in logs
    assert "email sent" in logs
    assert "pushed main to demo-origin" in logs
    pushed = subprocess.run(["git", "--git-dir", str(origin), "log", "--format=%s", "main"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert pushed.strip() == "add calc with tests"  # the controller pushed the agent's commit, after the approval
    outbox = list((controller.home / "outbox").glob("*.eml"))
    assert any("calc is ready" in p.read_text() for p in outbox)  # the broker sent it, on the controller side
    admin.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_watch_shows_the_fleet_live_with_the_approval_count(controller: Controller, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(command=["python3", "-c", "import time\nwhile True:\n    time.sleep(1)\n"])
    env = {**controller.env, "FLEETGATE_TOKEN": controller.admin_token, "COLUMNS": "200"}
    proc = subprocess.Popen([FLEETGATE, "watch"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr
    assert sandbox["id"] in stdout
    assert "pending approval" in stdout
    assert "running" in stdout


def test_policy_cli_checks_a_file(controller: Controller, tmp_path: Any) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("default: ask\nrules:\n  - tool: read_file\n    decision: allow\n")
    assert "OK" in controller.cli("policy", "check", str(good)).stdout.upper()
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: ask\nrules:\n  - tool: read_file\n    decision: permit\n")
    result = controller.cli("policy", "check", str(bad), check=False)
    assert result.returncode == 1
    assert "line 4" in result.stderr
    tested = controller.cli(
        "policy", "test", str(good), "--tool", "read_file", "--args", json.dumps({"path": "x"})
    ).stdout
    assert "allow" in tested
