"""Post-hoc review (the audit chain, review marks) and notifications (signed webhooks, single-use links)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from controller.db import engine_for, session_scope
from controller.oversight import audit
from controller.oversight.links import link_key, sign
from tests.conftest import Controller, free_port, wait_for
from tests.controller.oversight.conftest import AgentRun, decide, parsed, pending_for

ASK_DEPLOY = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}


def test_audit_verify_names_a_row_changed_in_the_database(controller: Controller, admin: httpx.Client) -> None:
    admin.post("/api/v1/tokens", json={"name": "audited", "role": "viewer"})
    ok = controller.cli("audit", "verify")
    assert "intact" in ok.stdout
    assert admin.get("/api/v1/audit/verify").json()["ok"] is True
    db = sqlite3.connect(controller.home / "fleetgate.db")
    try:
        row_id, original = db.execute(
            "select id, data from audit where id = (select max(id) from audit where event = 'token.created')"
        ).fetchone()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("update audit set actor = 'nobody' where id = ?", (row_id,))
        # Someone with the database file drops the guard and edits a row: the chain still tells.
        db.execute("drop trigger audit_no_update")
        db.execute("update audit set data = json_set(data, '$.role', 'admin') where id = ?", (row_id,))
        db.commit()
        bad = controller.cli("audit", "verify", check=False)
        assert bad.returncode == 1
        assert f"audit row {row_id}: its content was changed" in bad.stdout
        assert admin.get("/api/v1/audit/verify").json()["problems"][0]["id"] == row_id
    finally:  # the row as it was, so the rest of the session's log verifies again
        db.execute("drop trigger if exists audit_no_update")
        db.execute("update audit set data = ? where id = ?", (original, row_id))
        db.execute(
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit WHEN OLD.hash NOT LIKE 'pending:%' "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
        db.commit()
        db.close()
    assert admin.get("/api/v1/audit/verify").json()["ok"] is True


def test_audit_verify_names_a_deleted_row(tmp_path: Any, controller: Controller, admin: httpx.Client) -> None:
    copy = tmp_path / "copy.db"
    for i in range(3):
        admin.post("/api/v1/tokens", json={"name": f"del{i}", "role": "viewer"})
    with sqlite3.connect(controller.home / "fleetgate.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:
        (victim,) = db.execute("select max(id) - 1 from audit").fetchone()
        db.execute("drop trigger audit_no_delete")
        db.execute("delete from audit where id = ?", (victim,))
    result = controller.cli("audit", "verify", check=False, extra_env={"FLEETGATE_DATABASE_URL": f"sqlite:///{copy}"})
    assert result.returncode == 1
    assert f"rows {victim} before it were deleted" in result.stdout


def test_a_recorded_head_finds_rows_deleted_from_the_end_and_a_rewritten_end(
    tmp_path: Any, controller: Controller, admin: httpx.Client
) -> None:
    for i in range(3):
        admin.post("/api/v1/tokens", json={"name": f"tail{i}", "role": "viewer"})
    printed = controller.cli("audit", "verify").stdout
    found = re.search(r"head (\d+:[0-9a-f]{16})", printed)
    assert found, printed
    head = found[1]
    assert f"--head {head}" in printed  # the command to run later is printed with it
    copy = tmp_path / "copy.db"
    with sqlite3.connect(controller.home / "fleetgate.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:  # the two newest rows go: no gap is left behind
        db.execute("drop trigger audit_no_delete")
        db.execute("delete from audit where id > (select max(id) - 2 from audit)")
    on_copy = {"FLEETGATE_DATABASE_URL": f"sqlite:///{copy}"}
    assert controller.cli("audit", "verify", extra_env=on_copy).returncode == 0  # the chain alone cannot tell
    short = controller.cli("audit", "verify", "--head", head, check=False, extra_env=on_copy)
    assert short.returncode == 1
    assert "rows were deleted from the end" in short.stdout
    # Appends after the deletion take the deleted ids again, with an intact chain: the recorded head still tells.
    engine = engine_for(f"sqlite:///{copy}")
    for _ in range(3):
        with session_scope(engine) as session:
            audit.append(session, actor="someone", event="cover.up")
    engine.dispose()
    assert controller.cli("audit", "verify", extra_env=on_copy).returncode == 0
    rewritten = controller.cli("audit", "verify", "--head", head, check=False, extra_env=on_copy)
    assert rewritten.returncode == 1
    assert f"audit row {head.split(':')[0]}: it is not the row recorded as head" in rewritten.stdout
    # The live log verifies against its own head, over the API too; a malformed head is a clear 4xx.
    assert controller.cli("audit", "verify", "--head", head).returncode == 0
    assert admin.get("/api/v1/audit/verify", params={"head": head}).json()["ok"] is True
    ahead = admin.get("/api/v1/audit/verify", params={"head": "999999:" + "ab" * 8}).json()
    assert ahead["ok"] is False
    assert "deleted from the end" in ahead["problems"][0]["problem"]
    malformed = admin.get("/api/v1/audit/verify", params={"head": "yesterday"})
    assert malformed.status_code == 422
    assert "is not an audit head" in malformed.json()["detail"]
    typo = controller.cli("audit", "verify", "--head", "12", check=False)
    assert typo.returncode == 1
    assert "is not an audit head" in typo.stderr
    assert "Traceback" not in typo.stderr


def test_audit_export_writes_every_entry_as_json_lines(controller: Controller, tmp_path: Any) -> None:
    target = tmp_path / "audit.jsonl"
    controller.cli("audit", "export", "--output", str(target))
    entries = [json.loads(line) for line in target.read_text().splitlines()]
    assert entries
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    assert all(entries[i]["prev_hash"] == entries[i - 1]["hash"] for i in range(1, len(entries)))


def test_audit_commands_pointed_at_no_database_say_so_and_create_nothing(controller: Controller, tmp_path: Any) -> None:
    # A wrong home must not "verify" a fresh empty database as intact.
    wrong = {"FLEETGATE_HOME": str(tmp_path / "not-the-install"), "FLEETGATE_DATABASE_URL": ""}
    for args in (("audit", "verify"), ("audit", "export", "-o", str(tmp_path / "out.jsonl"))):
        result = controller.cli(*args, check=False, extra_env=wrong)
        assert result.returncode == 1, result
        assert "there is no fleetgate database at" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "not-the-install").exists()
    assert not (tmp_path / "out.jsonl").exists()
    stranger = tmp_path / "stranger.db"
    with sqlite3.connect(stranger) as db:
        db.execute("create table notes (text)")
    result = controller.cli(
        "audit", "verify", check=False, extra_env={"FLEETGATE_DATABASE_URL": f"sqlite:///{stranger}"}
    )
    assert result.returncode == 1
    assert "is not at this version's schema; `fleetgate init` migrates it" in result.stderr
    unwritable = controller.cli("audit", "export", "-o", str(tmp_path / "no" / "such" / "dir.jsonl"), check=False)
    assert unwritable.returncode == 1
    assert "cannot write" in unwritable.stderr
    assert "No such file or directory" in unwritable.stderr


def test_every_decision_and_admin_change_is_in_the_audit_log(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    assert admin.post("/api/v1/tokens", json={"name": "audited-admin-change", "role": "viewer"}).status_code == 201
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(sandbox["id"], "say(sdk.gate('deploy', {}))\n")
    item = pending_for(admin, sandbox["id"])
    decide(admin, item["id"], decision="approve", message="ok")
    run.lines()

    def events() -> list[str]:
        return [e["event"] for e in admin.get("/api/v1/audit", params={"limit": 1000}).json()["items"]]

    # The delivery is recorded just after the agent has its answer (off the agent's path), so it may trail a little.
    wait_for(lambda: "action.delivered" in events(), timeout=10, what="the delivery in the audit log")
    for expected in ("sandbox.created", "action.requested", "approval.voted", "approval.approved", "action.decided",
                     "action.delivered", "token.created"):  # fmt: skip
        assert expected in events(), expected


def test_reviewers_mark_actions_reviewed_or_flagged(
    controller: Controller,
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
) -> None:
    sandbox = governed("autonomous")
    run_agent(sandbox["id"], "sdk.gate('read_file', {'path': 'x'})\nsdk.gate('read_file', {'path': 'y'})\n").lines()
    first, second = admin.get("/api/v1/actions", params={"sandbox": sandbox["id"]}).json()["items"]
    with controller.http("viewer") as viewer:
        assert (
            viewer.post(
                f"/api/v1/actions/{first['id']}/review", json={"review": "flagged", "note": "why y?"}
            ).status_code
            == 200
        )
    controller.cli("review", str(second["id"]))
    flagged = admin.get("/api/v1/actions", params={"sandbox": sandbox["id"], "review": "flagged"}).json()["items"]
    assert [a["id"] for a in flagged] == [first["id"]]
    assert flagged[0]["reviewed_by"] == "viewer-user"
    assert admin.get(f"/api/v1/actions/{second['id']}").json()["review"] == "reviewed"


class Receiver:
    """A real HTTP server on loopback that records webhook calls; can be told to fail the first N."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(admin: httpx.Client) -> Iterator[Callable[..., tuple[Receiver, dict[str, Any]]]]:
    made: list[tuple[Receiver, int]] = []

    def subscribe(fail_first: int = 0, **body: Any) -> tuple[Receiver, dict[str, Any]]:
        r = Receiver(fail_first)
        hook = admin.post("/api/v1/webhooks", json={"url": r.url, **body}).json()
        made.append((r, hook["id"]))
        return r, hook

    yield subscribe
    for r, hook_id in made:
        admin.delete(f"/api/v1/webhooks/{hook_id}")
        r.server.shutdown()


def test_webhooks_are_signed_retried_and_slack_readable(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    receiver: Callable[..., tuple[Receiver, dict[str, Any]]],
) -> None:
    hook_receiver, hook = receiver(fail_first=2)
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(sandbox["id"], "say(sdk.gate('deploy', {'v': 2}))\n")
    item = pending_for(admin, sandbox["id"])
    wait_for(lambda: len(hook_receiver.calls) >= 3, timeout=30, what="the webhook to be retried until it lands")
    headers, body = hook_receiver.calls[2]
    expected = hmac.new(
        hook["secret"].encode(), headers["X-Fleetgate-Timestamp"].encode() + b"." + body, hashlib.sha256
    )
    assert headers["X-Fleetgate-Signature"] == "sha256=" + expected.hexdigest()
    payload = json.loads(body)
    assert payload["event"] == "approval.requested"
    assert f"{item['id']}" in payload["text"]
    assert payload["approval"]["id"] == item["id"]
    decide(admin, item["id"], decision="approve")
    run.lines()
    wait_for(
        lambda: any(json.loads(b)["event"] == "approval.decided" for _, b in hook_receiver.calls),
        timeout=30,
        what="the decided notification",
    )


def test_signed_links_decide_once_and_only_by_post(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    controller: Controller,
) -> None:
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(
        sandbox["id"], "try:\n    say(sdk.gate('deploy', {}))\nexcept sdk.Denied as e:\n    say('denied', e.message)\n"
    )
    item = pending_for(admin, sandbox["id"])
    with controller.http("approver") as approver:
        links = approver.post(f"/api/v1/approvals/{item['id']}/links").json()
    page = httpx.get(links["deny"])
    assert page.status_code == 200
    assert "Deny approval" in page.text
    assert admin.get(f"/api/v1/approvals/{item['id']}").json()["status"] == "pending"  # opening decides nothing
    key = link_key(controller.home)
    stale = sign(key, approval_id=item["id"], decision="approve", user="approver-user", ttl_s=-1)
    expired = httpx.post(links["approve"].rsplit("/", 1)[0] + "/" + stale)
    assert expired.status_code == 403
    assert "expired" in expired.text
    assert admin.get(f"/api/v1/approvals/{item['id']}").json()["status"] == "pending"
    used = httpx.post(links["deny"])
    assert "recorded" in used.text
    assert parsed(run.lines()) == [["denied", "denied by an approver"]]
    again = httpx.post(links["deny"])
    assert again.status_code == 409
    assert "used already" in again.text
    forged = links["approve"][:-3] + ("AAA" if not links["approve"].endswith("AAA") else "BBB")
    assert httpx.post(forged).status_code == 403
    assert admin.get(f"/api/v1/approvals/{item['id']}").json()["decided_by"] == ["approver-user"]


def test_webhook_links_decide_as_the_configured_user(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    receiver: Callable[..., tuple[Receiver, dict[str, Any]]],
    controller: Controller,
) -> None:
    controller.token("approver")
    hook_receiver, _ = receiver(link_user="approver-user")
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(sandbox["id"], "say(sdk.gate('deploy', {'v': 1}))\n")
    item = pending_for(admin, sandbox["id"])
    wait_for(lambda: hook_receiver.calls, timeout=30, what="the webhook")
    payload = json.loads(hook_receiver.calls[0][1])
    assert payload["links"]["approve"] in payload["text"]
    httpx.post(payload["links"]["approve"])
    assert parsed(run.lines()) == [[{"v": 1}]]
    assert admin.get(f"/api/v1/approvals/{item['id']}").json()["votes"][0]["via"] == "link"
