"""`fleetgate service ...` and `fleetgate secret ...`, run through Typer against a real API (fast tier): secrets
come from the environment or standard input, never from the command line, and are never printed."""

from __future__ import annotations

import getpass
import io
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from controller.cli import app
from controller.cli import services as cli_services
from controller.models import Role
from controller.oversight.services import reveal_secret, service_target
from tests.controller.served import Served, served_fleet

KEY = "sk-proj-cli-secret-do-not-print-31337"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_fleet(tmp_path_factory.mktemp("cli-services") / "home") as served:
        yield served


def run(api: Served, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env={**api.cli_env(), **(env or {})}, input=stdin)
    assert KEY not in result.output + result.stderr
    return result


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def secret_of(api: Served, name: str) -> str:
    with api.fleet.tx.read() as session:
        return reveal_secret(session, api.fleet.admin.secrets, name)


def test_service_add_reads_the_secret_from_the_named_variable(api: Served) -> None:
    added = run(
        api,
        *("service", "add", "gpt", "--kind", "openai", "--upstream", "https://api.openai.com/v1"),
        *("--secret-env", "OPENAI_KEY"),
        env={"OPENAI_KEY": KEY},
    )
    assert added.exit_code == 0, added.stderr
    assert "service gpt added (openai, with a secret)" in added.stdout
    assert "http://127.0.0.1:7070/gpt" in added.stdout
    with api.fleet.tx.read() as session:
        assert service_target(session, api.fleet.admin.secrets, "gpt").auth_value() == f"Bearer {KEY}"
    listed = run(api, "service", "ls")
    assert listed.exit_code == 0
    assert "gpt" in listed.stdout
    assert "openai" in listed.stdout
    assert "Authorization" in listed.stdout
    assert run(api, "service", "rm", "gpt").stdout.strip() == "service gpt removed"
    assert "gpt" not in run(api, "service", "ls").stdout
    assert "no service 'gpt'" in one_error(run(api, "service", "rm", "gpt"))


@pytest.mark.parametrize(("env", "words"), [({}, "is not set"), ({"EMPTY_KEY": ""}, "is empty")])
def test_service_add_says_when_the_secret_variable_is_missing(api: Served, env: dict[str, str], words: str) -> None:
    result = run(
        api,
        "service",
        "add",
        "x",
        "--kind",
        "anthropic",
        "--upstream",
        "https://a",
        "--secret-env",
        "EMPTY_KEY",
        env=env,
    )
    line = one_error(result)
    assert "environment variable EMPTY_KEY" in line
    assert words in line


def test_a_secret_on_the_command_line_is_refused_and_not_repeated(api: Served) -> None:
    add = run(api, "service", "add", "x", "--kind", "anthropic", "--upstream", "https://a", "--secret", KEY)
    assert "never taken from the command line" in one_error(add)
    assert "--secret-env" in add.stderr
    put = run(api, "secret", "set", "argv-secret", KEY)
    assert "never taken from the command line" in one_error(put)
    assert "argv-secret" not in [s.name for s in api.fleet.admin.list_secrets()]
    assert "x" not in [s.name for s in api.fleet.admin.list_services()]


@pytest.mark.parametrize(
    ("stdin", "stored"), [(f"{KEY}\n", KEY), (f"{KEY}\r\n", KEY), (f"{KEY}\n\n", f"{KEY}\n"), (KEY, KEY)]
)
def test_secret_set_reads_all_of_stdin_less_one_newline(api: Served, stdin: str, stored: str) -> None:
    result = run(api, "secret", "set", "from-stdin", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "secret from-stdin set"
    assert secret_of(api, "from-stdin") == stored


def test_secret_set_reads_the_named_variable_and_refuses_empty_input(api: Served) -> None:
    assert run(api, "secret", "set", "from-env", "--from-env", "DEPLOY_KEY", env={"DEPLOY_KEY": KEY}).exit_code == 0
    assert secret_of(api, "from-env") == KEY
    assert "is not set" in one_error(run(api, "secret", "set", "nothing", "--from-env", "UNSET_VARIABLE"))
    assert "standard input was empty" in one_error(run(api, "secret", "set", "nothing", stdin="\n"))


def test_secret_set_on_a_terminal_prompts_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or KEY)
    assert cli_services.from_stdin("typed") == KEY
    assert prompts == ["value of secret typed (not shown): "]


def test_secret_ls_and_rm_never_show_a_value(api: Served) -> None:
    run(api, "secret", "set", "listed", stdin=KEY)
    listed = run(api, "secret", "ls")
    assert listed.exit_code == 0
    assert "listed" in listed.stdout
    assert "admin-user" in listed.stdout
    assert run(api, "secret", "rm", "listed").stdout.strip() == "secret listed removed"
    assert "no secret 'listed'" in one_error(run(api, "secret", "rm", "listed"))


def test_only_an_admin_may_set_a_secret(api: Served) -> None:
    refused = CliRunner().invoke(app, ["secret", "set", "x"], env=api.cli_env(Role.viewer), input=KEY)
    assert refused.exit_code == 1
    assert "admin" in refused.stderr
    assert KEY not in refused.output + refused.stderr
