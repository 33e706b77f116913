"""The `fleetgate` command, run as a user runs it, against the real controller."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Controller, wait_for


def test_sandbox_create_ls_exec_logs_stop_rm(controller: Controller) -> None:
    sandbox_id = controller.cli(
        "sandbox",
        "create",
        "--image",
        "fleetgate/python:latest",
        "--memory",
        "256",
        "--env",
        "NAME=cli",
        "--",
        "sh",
        "-c",
        "echo hello from $NAME; sleep 600",
    ).stdout.strip()
    assert sandbox_id.startswith("sb_")
    listed = json.loads(controller.cli("sandbox", "ls", "--json").stdout)
    mine = next(s for s in listed if s["id"] == sandbox_id)
    assert mine["status"] == "running"
    assert mine["resources"]["memory_mb"] == 256
    table = controller.cli("sandbox", "ls").stdout
    assert sandbox_id in table
    assert "running" in table

    exec_ok = controller.cli("sandbox", "exec", sandbox_id, "--", "sh", "-c", "echo out; echo err >&2")
    assert (exec_ok.stdout, exec_ok.stderr) == ("out\n", "err\n")
    exec_fail = controller.cli("sandbox", "exec", sandbox_id, "--", "sh", "-c", "exit 5", check=False)
    assert exec_fail.returncode == 5

    wait_for(
        lambda: "hello from cli" in controller.cli("sandbox", "logs", sandbox_id).stdout,
        timeout=15,
        what="the command's output in `sandbox logs`",
    )
    assert f"stopped {sandbox_id}" in controller.cli("sandbox", "stop", sandbox_id).stdout
    # logs -f returns by itself once the sandbox is no longer running
    assert "hello from cli" in controller.cli("sandbox", "logs", "-f", sandbox_id, timeout=30).stdout
    assert f"removed {sandbox_id}" in controller.cli("sandbox", "rm", sandbox_id).stdout
    assert sandbox_id not in controller.cli("sandbox", "ls").stdout
    assert sandbox_id in controller.cli("sandbox", "ls", "--all").stdout


def test_cli_errors_are_one_line_for_a_person(controller: Controller) -> None:
    for args in (
        ("sandbox", "exec", "sb_000000000000", "--", "true"),
        ("sandbox", "create", "--image", "no-such-image:1"),
        ("sandbox", "create", "--env", "NOEQUALS"),
        ("sandbox", "rm", "nope"),
    ):
        result = controller.cli(*args, check=False)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr


def test_cli_without_a_token_says_how_to_get_one(controller: Controller) -> None:
    result = controller.cli("sandbox", "ls", token="", check=False)
    assert result.returncode == 1
    assert "FLEETGATE_TOKEN" in result.stderr


def test_cli_when_the_controller_is_down(controller: Controller) -> None:
    env_url = "http://127.0.0.1:9"  # discard port: nothing listens
    result = controller.cli("sandbox", "ls", check=False, extra_env={"FLEETGATE_URL": env_url})
    assert result.returncode == 1
    assert "not answering" in result.stderr
    assert "fleetgate up" in result.stderr


def test_status_and_template_commands(controller: Controller) -> None:
    status = controller.cli("status").stdout
    assert "up" in status
    assert "redis: ok" in status
    assert "workspace limits: ok" in status
    assert "isolation (local): gVisor (runsc)" in status
    templates = controller.cli("template", "ls").stdout
    assert "python" in templates


def test_status_asks_the_controller_fleetgate_url_names(controller: Controller, tmp_path: Path) -> None:
    elsewhere = {"FLEETGATE_HOME": str(tmp_path / "other"), "FLEETGATE_BIND": "127.0.0.1:9"}
    status = controller.cli("status", extra_env={**elsewhere, "FLEETGATE_URL": controller.url}).stdout
    assert f"up at {controller.url}" in status
    assert "redis: ok" in status
    down = controller.cli("status", check=False, extra_env={**elsewhere, "FLEETGATE_URL": "http://127.0.0.1:9"})
    assert down.returncode == 1
    assert "down at http://127.0.0.1:9" in down.stdout


def test_up_refuses_to_start_twice_and_init_is_idempotent(controller: Controller) -> None:
    again = controller.cli("up", check=False, timeout=30)
    assert again.returncode == 1
    assert "already runs" in again.stderr
    init = controller.cli("init")
    assert "already initialised" in init.stdout
    assert "fg_" not in init.stdout


def test_one_person_with_one_token_starts_an_agent_under_a_policy_file_and_approves_its_ask(
    controller: Controller, tmp_path: Path
) -> None:
    policy = tmp_path / "ask-deploy.yaml"
    policy.write_text("default: allow\nrules:\n  - tool: deploy\n    decision: ask\n")
    agent = "from agent_runtime import sdk; print('deployed', sdk.gate('deploy', {'env': 'prod'}), flush=True)"
    sandbox_id = controller.cli(
        "sandbox", "create", "--image", "fleetgate/python:latest", "--policy", str(policy), "--",
        "python3", "-c", agent,
    ).stdout.strip()  # fmt: skip
    try:
        approval = wait_for(
            lambda: next((a for a in json.loads(controller.cli("approvals", "--json").stdout)
                          if a["sandbox_id"] == sandbox_id), None),
            timeout=30,
            what="the agent's ask in the queue",
        )  # fmt: skip
        assert "approved" in controller.cli("approve", str(approval["id"])).stdout  # the admin who started it
        wait_for(
            lambda: "deployed {'env': 'prod'}" in controller.cli("sandbox", "logs", sandbox_id).stdout,
            timeout=30,
            what="the agent to go on once approved",
        )
    finally:
        controller.cli("sandbox", "rm", sandbox_id, check=False)


def test_sandbox_create_takes_a_preset_and_says_what_a_bad_policy_is(controller: Controller, tmp_path: Path) -> None:
    strict = controller.cli("sandbox", "create", "--image", "fleetgate/python:latest", "--policy", "strict")
    controller.cli("sandbox", "rm", strict.stdout.strip())
    missing = controller.cli("sandbox", "create", "--policy", "no-such.yaml", check=False)
    assert missing.returncode == 1
    assert "--policy takes a preset (autonomous, supervised, strict) or a YAML/JSON policy file" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("default: allow\nrules:\n  - tool: deploy\n    decision: perhaps\n")
    refused = controller.cli("sandbox", "create", "--policy", str(broken), check=False)
    assert refused.returncode == 1
    assert "line 4" in refused.stderr
    assert "Traceback" not in refused.stderr
