"""End to end: an agent in a real sandbox asks, people decide over the API, the agent gets the outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Controller, wait_for
from tests.controller.oversight.conftest import AgentRun, decide, parsed, pending_for

ASK_DEPLOY = {"default": "allow", "rules": [{"tool": "deploy", "decision": "ask"}]}


def test_allowed_and_denied_actions_answer_at_once_and_say_what_decided(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    policy = {
        "default": "ask",
        "rules": [
            {"tool": "read_file", "decision": "allow", "name": "reading"},
            {"tool": "payment.*", "args": {"amount": "> 100"}, "decision": "deny", "message": "too expensive"},
        ],
    }
    sandbox = governed(policy)
    run = run_agent(
        sandbox["id"],
        "say('allowed', sdk.gate('read_file', {'path': 'a.txt'}))\n"
        "try:\n    sdk.gate('payment.charge', {'amount': 250}, risk='high')\n"
        "except sdk.Denied as e:\n    say('denied', e.message, e.decided_by)\n",
    )
    assert parsed(run.lines()) == [["allowed", {"path": "a.txt"}], ["denied", "too expensive", "policy"]]
    actions = admin.get("/api/v1/actions", params={"sandbox": sandbox["id"]}).json()["items"]
    by_tool = {a["tool"]: a for a in actions}
    assert by_tool["read_file"]["status"] == "allowed"
    assert by_tool["read_file"]["decided_by"] == "policy"
    assert by_tool["read_file"]["decision"]["layer"] == "sandbox"
    assert by_tool["payment.charge"]["status"] == "denied"
    assert "deny" in by_tool["payment.charge"]["decision"]["reason"]


def test_ask_then_approve_with_edited_args_resumes_the_agent(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(sandbox["id"], "say('deploying', sdk.gate('deploy', {'env': 'staging', 'version': 3}))\n")
    item = pending_for(admin, sandbox["id"])
    assert item["kind"] == "action"
    assert item["action"]["args"] == {"env": "staging", "version": 3}
    assert run.running  # the agent really waits
    response = decide(admin, item["id"], decision="approve", args={"env": "staging", "version": 4})
    assert response.status_code == 200, response.text
    assert parsed(run.lines()) == [["deploying", {"env": "staging", "version": 4}]]
    action = admin.get(f"/api/v1/actions/{item['action_id']}").json()
    assert action["decided_by"] == "person"
    assert action["final_args"] == {"env": "staging", "version": 4}
    wait_for(
        lambda: admin.get(f"/api/v1/actions/{item['action_id']}").json()["delivered_at"],
        timeout=10,
        what="the delivery to be recorded",
    )


def test_deny_delivers_the_approvers_message(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(
        sandbox["id"],
        "try:\n    sdk.gate('deploy', {'env': 'prod'})\nexcept sdk.Denied as e:\n    say('denied', e.message)\n",
    )
    item = pending_for(admin, sandbox["id"])
    decide(admin, item["id"], decision="deny", message="not on a Friday")
    assert parsed(run.lines()) == [["denied", "not on a Friday"]]


def test_timeout_applies_the_default_outcome(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    policy = {
        "default": "allow",
        "rules": [
            {"tool": "deploy", "decision": "ask", "timeout_s": 2},
            {"tool": "backup", "decision": "ask", "timeout_s": 2, "on_timeout": "allow"},
        ],
    }
    sandbox = governed(policy)
    started = time.monotonic()
    run = run_agent(
        sandbox["id"],
        "try:\n    sdk.gate('deploy', {})\nexcept sdk.Denied as e:\n    say('denied', e.message, e.decided_by)\n"
        "say('backup', sdk.gate('backup', {'db': 'main'}))\n",
    )
    assert parsed(run.lines(timeout=60)) == [
        ["denied", "no one decided in time", "timeout"],
        ["backup", {"db": "main"}],
    ]
    assert time.monotonic() - started >= 4
    items = admin.get("/api/v1/approvals", params={"sandbox": sandbox["id"], "status": "expired"}).json()["items"]
    assert len(items) == 2


def test_a_quorum_of_two_different_people(
    controller: Controller,
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    operator: httpx.Client,
) -> None:
    policy = {
        "default": "allow",
        "separation_of_duties": True,
        "rules": [{"tool": "wire", "decision": "ask", "quorum": 2, "risk": "critical"}],
    }
    sandbox = governed(policy)
    run = run_agent(sandbox["id"], "say('wired', sdk.gate('wire', {'amount': 10}, risk='critical'))\n")
    item = pending_for(admin, sandbox["id"])
    assert item["quorum"] == 2
    first = decide(admin, item["id"], decision="approve")
    assert first.json()["settled"] is False
    again = decide(admin, item["id"], decision="approve")
    assert again.status_code == 409
    assert "counts once" in again.json()["detail"]
    own = decide(operator, item["id"], decision="approve")  # the operator started the sandbox
    assert own.status_code == 403
    assert "separation_of_duties" in own.json()["detail"]
    time.sleep(1)
    assert run.running
    with controller.http("approver") as approver:
        second = decide(approver, item["id"], decision="approve")
    assert second.json()["settled"] is True
    assert parsed(run.lines()) == [["wired", {"amount": 10}]]
    decided_by = admin.get(f"/api/v1/approvals/{item['id']}").json()["decided_by"]
    assert sorted(decided_by) == ["admin", "approver-user"]


def test_racing_decisions_have_one_winner_and_one_clear_409(
    controller: Controller,
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
) -> None:
    sandbox = governed(ASK_DEPLOY)
    run = run_agent(
        sandbox["id"],
        "try:\n    say('ok', sdk.gate('deploy', {}))\nexcept sdk.Denied as e:\n    say('denied', e.message)\n",
    )
    item = pending_for(admin, sandbox["id"])
    barrier = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def race(name: str, client: httpx.Client, decision: str) -> None:
        barrier.wait()
        answers[name] = decide(client, item["id"], decision=decision, message=f"from {name}")

    with controller.http("approver") as approver:
        threads = [
            threading.Thread(target=race, args=("admin", admin, "approve")),
            threading.Thread(target=race, args=("approver", approver, "deny")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [200, 409]
    loser = next(r for r in answers.values() if r.status_code == 409)
    assert "already" in loser.json()["detail"]
    winner = next(name for name, r in answers.items() if r.status_code == 200)
    assert parsed(run.lines()) == ([["ok", {}]] if winner == "admin" else [["denied", "from approver"]])


def test_approve_and_remember_then_revoke(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    sandbox = governed(ASK_DEPLOY)
    first = run_agent(sandbox["id"], "say(sdk.gate('deploy', {'env': 'staging'}))\n")
    item = pending_for(admin, sandbox["id"])
    preview = admin.get(f"/api/v1/approvals/{item['id']}/preview", params={"scope": "sandbox"}).json()
    assert preview["matched"] == 1  # the pending action itself is the only one it would have covered
    answer = decide(admin, item["id"], decision="approve", remember="sandbox").json()
    assert answer["grant"]["scope"] == "sandbox"
    first.lines()
    second = run_agent(sandbox["id"], "say(sdk.gate('deploy', {'env': 'staging'}))\n")
    assert parsed(second.lines(timeout=20)) == [[{"env": "staging"}]]
    actions = admin.get("/api/v1/actions", params={"sandbox": sandbox["id"]}).json()["items"]
    assert actions[0]["decided_by"] == "grant"
    other_args = run_agent(
        sandbox["id"], "try:\n    sdk.gate('deploy', {'env': 'prod'})\nexcept sdk.Denied as e:\n    say('no')\n"
    )
    other = pending_for(admin, sandbox["id"])  # different args: the grant does not cover them
    decide(admin, other["id"], decision="deny")
    other_args.lines()
    assert admin.delete(f"/api/v1/grants/{answer['grant']['id']}").status_code == 200
    third = run_agent(
        sandbox["id"], "try:\n    sdk.gate('deploy', {'env': 'staging'})\nexcept sdk.Denied as e:\n    say('no')\n"
    )
    asked = pending_for(admin, sandbox["id"])
    decide(admin, asked["id"], decision="deny")
    assert parsed(third.lines()) == [["no"]]


def test_run_wraps_any_command_in_the_gate(governed: Callable[..., dict[str, Any]], admin: httpx.Client) -> None:
    policy = {"default": "deny", "rules": [{"tool": "shell", "program": "echo", "decision": "allow"}]}
    sandbox = governed(policy)

    def run(*argv: str) -> dict[str, Any]:
        body = {"command": ["python3", "-m", "agent_runtime", "run", "--", *argv]}
        return dict(admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json=body).json())

    allowed = run("echo", "hello")
    assert (allowed["exit_code"], allowed["stdout"]) == (0, "hello\n")
    denied = run("rm", "-rf", "/workspace")
    assert denied["exit_code"] == 126
    assert "denied" in denied["stderr"]
    sneaky = run("sh", "-c", "echo hi; rm -rf /workspace")
    assert sneaky["exit_code"] == 126


def test_checkpoint_continue_with_feedback_and_stop(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    sandbox = governed("autonomous")
    run = run_agent(
        sandbox["id"],
        "say('feedback', sdk.checkpoint('stage 1 done', {'tests': 41}))\n"
        "try:\n    sdk.checkpoint('stage 2 done')\nexcept sdk.Stopped as e:\n    say('stopped', str(e))\n",
    )
    first = pending_for(admin, sandbox["id"], kind="checkpoint")
    assert first["summary"] == "stage 1 done"
    assert first["data"] == {"tests": 41}
    decide(admin, first["id"], decision="approve", message="looks good, go on")
    second = wait_for(
        lambda: (p := pending_for(admin, sandbox["id"], kind="checkpoint"))["id"] != first["id"] and p,
        timeout=20,
        what="the second checkpoint",
    )
    decide(admin, second["id"], decision="deny", message="stop here")
    result = run.finish()
    assert '["feedback", "looks good, go on"]' in result["stdout"]
    wait_for(
        lambda: admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"] in ("stopped", "exited"),
        timeout=30,
        what="the stopped checkpoint to stop the sandbox",
    )


def test_escalation_pauses_until_a_person_takes_and_resumes(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    docker_client: Any,
) -> None:
    sandbox = governed("autonomous")
    run = run_agent(sandbox["id"], "say('answer', sdk.escalate('I am stuck on the flaky test'))\n")
    item = pending_for(admin, sandbox["id"], kind="escalation")
    wait_for(
        lambda: docker_client.api.inspect_container(sandbox["container_id"])["State"]["Paused"],
        timeout=10,
        what="the sandbox to be paused",
    )
    assert admin.get(f"/api/v1/sandboxes/{sandbox['id']}").json()["status"] == "paused"
    taken = admin.post(f"/api/v1/approvals/{item['id']}/take").json()
    assert taken["assignee"] == "admin"
    decide(admin, item["id"], decision="approve", message="skip it, it is known flaky")
    assert parsed(run.lines()) == [["answer", "skip it, it is known flaky"]]
    assert not docker_client.api.inspect_container(sandbox["container_id"])["State"]["Paused"]


def test_repeated_denials_escalate_automatically(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    docker_client: Any,
) -> None:
    sandbox = governed({"default": "allow", "rules": [{"tool": "rm", "decision": "deny"}]})
    run = run_agent(
        sandbox["id"],
        "for i in range(3):\n    try:\n        sdk.gate('rm', {'path': str(i)})\n    except sdk.Denied:\n        pass\n"
        "say('after', sdk.gate('ls', {}))\n",
    )
    item = pending_for(admin, sandbox["id"], kind="escalation")
    assert "3 denied actions in a row" in item["summary"]
    wait_for(
        lambda: docker_client.api.inspect_container(sandbox["container_id"])["State"]["Paused"],
        timeout=10,
        what="the sandbox to be paused",
    )
    decide(admin, item["id"], decision="approve", message="carry on")
    assert parsed(run.lines()) == [["after", {}]]


def test_a_remembered_shell_command_covers_exactly_that_command(
    governed: Callable[..., dict[str, Any]], run_agent: Callable[[str, str], AgentRun], admin: httpx.Client
) -> None:
    policy = {"default": "allow", "rules": [{"tool": "shell", "program": "rm", "decision": "ask"}]}
    sandbox = governed(policy)
    script = "try:\n    say(sdk.gate('shell', {'command': sys.argv[1]}))\nexcept sdk.Denied as e:\n    say('no')\n"

    def ask(command: str) -> AgentRun:
        return run_agent(sandbox["id"], script.replace("sys.argv[1]", repr(command)))

    first = ask("rm *.pyc")
    decide(admin, pending_for(admin, sandbox["id"])["id"], decision="approve", remember="sandbox")
    first.lines()
    assert parsed(ask("rm *.pyc").lines(timeout=20)) == [[{"command": "rm *.pyc"}]]  # remembered
    wider = ask("rm -rf /workspace/x.pyc")
    item = pending_for(admin, sandbox["id"])  # a glob-looking grant must not cover another command
    assert item["action"]["args"] == {"command": "rm -rf /workspace/x.pyc"}
    decide(admin, item["id"], decision="deny")
    assert parsed(wider.lines()) == [["no"]]


def test_removing_a_sandbox_cancels_its_pending_items(
    governed: Callable[..., dict[str, Any]],
    run_agent: Callable[[str, str], AgentRun],
    admin: httpx.Client,
    operator: httpx.Client,
) -> None:
    sandbox = governed(ASK_DEPLOY)
    run_agent(sandbox["id"], "sdk.gate('deploy', {})\n")
    item = pending_for(admin, sandbox["id"])
    assert operator.delete(f"/api/v1/sandboxes/{sandbox['id']}").status_code == 200
    settled = admin.get(f"/api/v1/approvals/{item['id']}").json()
    assert settled["status"] == "cancelled"
    # A reconcile pass that lists the engine while the container is being removed may settle it first, as gone.
    assert settled["message"] in ("the sandbox was removed", "the sandbox's container is gone")
    action = admin.get(f"/api/v1/actions/{item['action_id']}").json()
    assert (action["status"], action["decided_by"]) == ("denied", "cancelled")
    every = admin.get("/api/v1/approvals", params={"status": "", "sandbox": sandbox["id"]}).json()["items"]
    assert [a["status"] for a in every] == ["cancelled"]
    assert admin.get("/api/v1/approvals", params={"sandbox": sandbox["id"]}).json()["items"] == []


def test_a_brokered_action_whose_task_was_lost_is_carried_out_by_the_sweep(
    controller: Controller, governed: Callable[..., dict[str, Any]], admin: httpx.Client
) -> None:
    import sqlite3

    sandbox = governed("autonomous")
    # An allowed email whose broker task never reached the queue (as when Redis was away at that moment).
    args = '{"to": "ops@example.com", "subject": "lost and found", "body": "x"}'
    with sqlite3.connect(controller.home / "fleetgate.db") as db:
        db.execute(
            "insert into action (sandbox_id, tool, args, risk, status, decided_by, decision, verdict, brokered, "
            "broker_status, created_at, decided_at) values (?, 'email.send', ?, 'low', 'allowed', 'policy', '{}', "
            "'{}', 1, 'queued', datetime('now', '-1 hour'), datetime('now', '-1 hour'))",
            (sandbox["id"], args),
        )
        (action_id,) = db.execute("select max(id) from action").fetchone()
    done = wait_for(
        lambda: (a := admin.get(f"/api/v1/actions/{action_id}").json())["broker_status"] == "done" and a,
        timeout=30,
        what="the sweep to run the lost broker task",
    )
    assert done["result"]["via"] == "outbox"
    assert "lost and found" in Path(done["result"]["file"]).read_text()


def test_a_denied_push_is_not_run_however_the_agent_spells_it(
    governed: Callable[..., dict[str, Any]], admin: httpx.Client
) -> None:
    """The red team's forms, live: the gate refuses them, so git never runs (its push would fail anyway: no
    remote; a marker file written by a fake `git push` shows whether anything ran)."""
    sandbox = governed({"default": "allow", "rules": [{"tool": "shell", "command": "git push*", "decision": "deny"}]})

    def run(*argv: str) -> dict[str, Any]:
        body = {"command": ["python3", "-m", "agent_runtime", "run", "--", *argv], "timeout_s": 60}
        return dict(admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json=body).json())

    setup = admin.post(
        f"/api/v1/sandboxes/{sandbox['id']}/exec",
        json={"command": ["sh", "-c", "git init -q . && printf '#!/bin/sh\\ntouch /workspace/ran\\n' > git "
                          "&& chmod +x git"]},
    ).json()  # fmt: skip
    assert setup["exit_code"] == 0, setup
    for argv in (
        ["/usr/bin/git", "push"],
        ["./git", "push"],
        ["git", "-C", ".", "push"],
        ["git", "--git-dir=.git", "push"],
        ["git", "-c", "alias.x=push", "x"],
        ["sh", "-c", "alias p='./git push'; p"],
        ["sh", "-c", "alias p='./git push'\np"],
    ):
        refused = run(*argv)
        assert refused["exit_code"] == 126, (argv, refused)
        assert "denied" in refused["stderr"], (argv, refused)
        assert run("true")["exit_code"] == 0  # an allowed action between: three denials in a row would escalate
    unseen = admin.post(
        f"/api/v1/sandboxes/{sandbox['id']}/exec",
        json={"command": ["python3", "-m", "agent_runtime", "run", "--", "python3", "-c",
                          "import os; os.system('./git push')"], "timeout_s": 5},
    ).json()  # fmt: skip
    assert unseen["timed_out"], unseen  # it waits for a person instead of running
    asked = pending_for(admin, sandbox["id"])
    assert "python3 runs code given on its command line" in asked["data"]["reason"]
    decide(admin, asked["id"], decision="deny")
    check = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["ls", "/workspace"]}).json()
    assert "ran" not in check["stdout"].split(), check
