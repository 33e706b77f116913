"""`fleetgate policy check` and `fleetgate policy test`, run through Typer as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from controller.cli.policy import policy_app

SANDBOX = """\
description: what the CI agent may do
default: ask
rules:
  - tool: shell
    command: ["pytest*", "ls*"]
    decision: allow
  - tool: shell
    program: rm
    decision: deny
    message: no deleting
  - tool: payment.*
    args: {amount: ">100"}
    decision: deny
"""
FLEET = "default: allow\nrules:\n  - {tool: shell, command: 'ls *secret*', decision: deny}\n"
TEMPLATE = "default: allow\nrules:\n  - {tool: shell, command: 'pytest*', decision: ask, name: tests need a look}\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(policy_app, list(args))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, text in {"sandbox.yaml": SANDBOX, "fleet.yaml": FLEET, "template.yaml": TEMPLATE}.items():
        (tmp_path / name).write_text(text)
        paths[name.split(".")[0]] = str(tmp_path / name)
    return paths


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_check_says_ok_for_a_valid_policy(files: dict[str, str]) -> None:
    result = run("check", files["sandbox"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK {files['sandbox']}: 3 rules, default ask")


def test_check_accepts_a_preset_name() -> None:
    assert run("check", "supervised").exit_code == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "default: ask\nrules:\n  - tool: x\n    decision: permit\n",
            'line 4: rules[0].decision: must be one of allow, ask, deny (got "permit")',
        ),
        ("default: ask\nrules:\n  - tool: x\n   decision: deny\n", "line 4: "),
        (
            '{"default": "ask",\n "rules": [{"tool": "x", "decision": "allow", "risk": "huge"}]}',
            'line 2: rules[0].risk: must be one of low, medium, high, critical (got "huge")',
        ),
        (
            "default: ask\nrules:\n  - tool: pay\n    args: {amount: '>100'}\n    decision: deny\n"
            "    match: [{tool: pay, args: {amount: 5}}]\n",
            "line 6: rules[0].match[0]: rule 1 (line 3) does not match this example, which it must",
        ),
    ],
)
def test_check_fails_with_one_line_naming_the_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = one_error_line(run("check", str(path)))
    assert line.startswith(f"error: {path} {expected}"), line


def test_check_fails_cleanly_on_a_missing_file(tmp_path: Path) -> None:
    line = one_error_line(run("check", str(tmp_path / "nope.yaml")))
    assert line == f"error: cannot read {tmp_path / 'nope.yaml'}: No such file or directory"


def test_test_shows_the_decision_the_rule_its_line_and_the_reason(files: dict[str, str]) -> None:
    result = run("test", files["sandbox"], "--tool", "payment.send", "--args", '{"amount": 150}', "--risk", "high")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        'deny  payment.send {"amount": 150} (risk high)',
        "      decided by: sandbox layer, rule 3 (line 11)",
        "      reason: rule 3 (line 11) of the sandbox policy: deny payment.* when amount > 100",
    ]


def test_test_shows_each_shell_segment(files: dict[str, str]) -> None:
    result = run("test", files["sandbox"], "--tool", "shell", "--args", '{"command": "pytest -q && rm -rf build"}')
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("deny  shell")
    assert "reason: `rm -rf build`: rule 2 (line 7) of the sandbox policy: deny shell when the program is 'rm'" in out
    assert "allow `pytest -q` (sandbox layer, rule 1 (line 4))" in out
    assert "deny  `rm -rf build` (sandbox layer, rule 2 (line 7))" in out


def test_test_applies_higher_layers(files: dict[str, str]) -> None:
    fleet = run(
        "test",
        files["sandbox"],
        "--layer",
        f"fleet={files['fleet']}",
        "--tool",
        "shell",
        "--args",
        '{"command": "ls secrets/"}',
    )
    assert "decided by: fleet layer, rule 1 (line 3)" in fleet.stdout
    template = run(
        "test",
        files["sandbox"],
        "--layer",
        f"template={files['template']}",
        "--tool",
        "shell",
        "--args",
        '{"command": "pytest"}',
    )
    assert template.stdout.startswith("ask   shell")
    assert 'decided by: template layer, rule 1 "tests need a look" (line 3)' in template.stdout


def test_test_runs_a_file_of_examples_and_fails_on_a_surprise(files: dict[str, str], tmp_path: Path) -> None:
    examples = tmp_path / "examples.yaml"
    examples.write_text(
        "- {tool: shell, args: {command: ls -la}, expect: allow}\n"
        "- {tool: shell, args: {command: 'ls; rm x'}, expect: deny}\n"
        "- {tool: payment.send, args: {amount: 5}, risk: critical, expect: allow}\n"
    )
    result = run("test", files["sandbox"], "--examples", str(examples))
    assert result.stdout.count("(as expected)") == 2
    assert "(expected allow)" in result.stdout
    assert one_error_line(result) == "error: 1 of 3 actions were not decided as expected"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tool", "x", "--args", "[1"], "error: --args is not valid JSON: "),
        (["--tool", "x", "--args", "[1]"], "error: --args must be a JSON object"),
        (["--tool", "x", "--risk", "huge"], 'error: --risk must be one of low, medium, high, critical (got "huge")'),
        (
            ["--tool", "x", "--layer", "sandbox=x.yaml"],
            "error: --layer 'sandbox=x.yaml': write fleet=FILE or template=FILE",
        ),
        (
            ["--tool", "x", "--layer", "fleet=supervised", "--layer", "fleet=strict"],
            "error: --layer fleet is given twice",
        ),
        ([], "error: nothing to decide: give an action with --tool"),
    ],
)
def test_test_errors_are_one_line(files: dict[str, str], args: list[str], expected: str) -> None:
    assert one_error_line(run("test", files["sandbox"], *args)).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tool: x\n", "must hold a list of actions"),
        ("- [1]\n", "item 1: write {tool: NAME"),
        ("- {tool: x, args: [1]}\n", "item 1: args must be a mapping"),
        ("- {tool: x, expect: maybe}\n", 'item 1: expect must be one of allow, ask, deny (got "maybe")'),
        ("- {tool: x, risk: huge}\n", "item 1: risk must be one of low, medium, high, critical"),
        ("- [unclosed\n", "is not valid YAML or JSON"),
    ],
)
def test_bad_example_files_are_one_line_errors(files: dict[str, str], tmp_path: Path, text: str, expected: str) -> None:
    examples = tmp_path / "examples.yaml"
    examples.write_text(text)
    assert expected in one_error_line(run("test", files["sandbox"], "--examples", str(examples)))


RED_TEAM = "default: allow\nrules:\n  - {tool: shell, command: 'git push*', decision: deny}\n"


@pytest.mark.parametrize(
    ("command", "decision", "why"),
    [
        ("/usr/bin/git push", "deny", "the command matches 'git push*'"),
        ("./git push", "deny", "the command matches 'git push*'"),
        ("git -C . push", "deny", "the command matches 'git push*'"),
        ("git --git-dir=.git push", "deny", "the command matches 'git push*'"),
        ("git -c alias.x=push x", "deny", "the command matches 'git push*'"),
        ("alias p='git push'; p", "deny", "the command matches 'git push*'"),
        ("alias p='git push'\np", "deny", "the command matches 'git push*'"),
        ("python3 -c \"import os; os.system('git push')\"", "ask", "python3 runs code given on its command line"),
    ],
)
def test_the_red_teams_forms_of_a_denied_push(tmp_path: Path, command: str, decision: str, why: str) -> None:
    policy = tmp_path / "red-team.yaml"
    policy.write_text(RED_TEAM)
    result = run("test", str(policy), "--tool", "shell", "--args", json.dumps({"command": command}))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{decision:5} shell"), result.stdout
    assert why in result.stdout
