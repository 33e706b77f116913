"""A rule about a program holds however the program is called, and what cannot be seen into is never allowed.

The red team's forms, generated: git by any path and with any of its global options before the subcommand, git
aliases given with `-c`, shell aliases the same command line defines (same line or a later one), and code handed
to an interpreter, a script file, eval or a variable as the program, each wrapped and grouped the ways a shell
allows.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.oversight.policy import ActionRequest, Decision, Layer, evaluate, policy_from_value
from controller.oversight.shell import segments

DENY_PUSH = policy_from_value(
    {"default": "allow", "rules": [{"tool": "shell", "command": "git push*", "decision": "deny"}]}
)
GITS = ["git", "/usr/bin/git", "/bin/git", "/usr/local/bin/git", "./git", "../git", "/tmp/git", "bin/git"]
GLOBAL_OPTIONS = ["-C .", "-C /workspace", "--git-dir=.git", "--git-dir .git", "--work-tree=.", "--work-tree .",
                  "--no-pager", "-P", "-p", "--paginate", "--bare", "--no-replace-objects", "--literal-pathspecs",
                  "--namespace=n", "--no-optional-locks", "-c user.name=x", "-c color.ui=false"]  # fmt: skip
WRAPPERS = ["{}", "env X=1 {}", "X=1 {}", "nice {}", "timeout 3 {}", "sudo {}", "sudo -u root {}", "command {}",
            "sh -c {q}", "bash -c {q}", "nohup {}"]  # fmt: skip
GROUPS = ["{}", "({})", "{{ {}; }}", "echo $({})", "true && {}", "false || {}", "echo x | {}", "{}\necho done"]
SEPARATORS = ["; ", " && ", "\n", " || ", " & "]

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
args = st.lists(st.sampled_from(["origin", "main", "--force", "-u", "HEAD:refs/heads/x", "'a b'"]), max_size=3)


def decide(command: str, policy: object = DENY_PUSH) -> Decision:
    return evaluate([Layer("sandbox", policy)], ActionRequest("shell", {"command": command})).decision  # type: ignore[arg-type]


def wrapped(draw: st.DrawFn, command: str) -> str:
    for wrapper in draw(st.lists(st.sampled_from(WRAPPERS), max_size=2)):
        command = wrapper.format(command, q=shlex.quote(command))
    return draw(st.sampled_from(GROUPS)).format(command)


@st.composite
def git_push(draw: st.DrawFn) -> str:
    options = draw(st.lists(st.sampled_from(GLOBAL_OPTIONS), max_size=4))
    return " ".join([draw(st.sampled_from(GITS)), *options, "push", *draw(args)])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_git_push_is_denied_by_any_path_and_whatever_global_options_come_first(data: st.DataObject) -> None:
    command = wrapped(data.draw, data.draw(git_push()))
    assert decide(command) == Decision.deny, command


@settings(max_examples=120, deadline=None)
@given(alias=names, options=st.lists(st.sampled_from(GLOBAL_OPTIONS), max_size=2), rest=args, bang=st.booleans())
def test_a_git_alias_given_with_c_is_expanded(alias: str, options: list[str], rest: list[str], bang: bool) -> None:
    value = "!git push" if bang else "push"
    command = " ".join(["git", *options, "-c", shlex.quote(f"alias.{alias}={value}"), alias, *rest])
    assert decide(command) == Decision.deny, command


@settings(max_examples=120, deadline=None)
@given(alias=names, separator=st.sampled_from(SEPARATORS), rest=args, data=st.data())
def test_a_shell_alias_the_command_line_defines_is_expanded_where_it_is_used(
    alias: str, separator: str, rest: list[str], data: st.DataObject
) -> None:
    definition = f"alias {alias}={shlex.quote(data.draw(git_push()))}"
    use = " ".join([alias, *rest])
    command = wrapped(data.draw, definition + separator + use)
    assert decide(command) == Decision.deny, command


INTERPRETED = [
    ("python3", "-c"), ("python", "-c"), ("python3.11", "-c"), ("perl", "-e"), ("perl", "-E"), ("ruby", "-e"),
    ("node", "-e"), ("node", "--eval"), ("node", "-p"), ("php", "-r"), ("lua", "-e"),
]  # fmt: skip
code = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(which=st.sampled_from(INTERPRETED), text=code, data=st.data())
def test_code_given_to_an_interpreter_is_never_allowed_unseen(
    which: tuple[str, str], text: str, data: st.DataObject
) -> None:
    program, flag = which
    command = wrapped(data.draw, shlex.join([program, flag, text]))
    assert decide(command) != Decision.allow, command


@settings(max_examples=120, deadline=None)
@given(
    form=st.sampled_from(["python3 {f}.py", "sh {f}.sh", "bash ./{f}", "./{f}", "perl {f}.pl", "eval {f}",
                          "${f} push", "$({f}) push", "git {f}", "git --{f} push", "source {f}", ". ./{f}"]),
    name=names,
    data=st.data(),
)  # fmt: skip
def test_what_cannot_be_seen_into_asks_with_a_reason_and_is_never_allowed(
    form: str, name: str, data: st.DataObject
) -> None:
    command = form.format(f=name)
    if command.split()[:2] == ["git", name] and name in ("push", "status", "log", "diff", "add", "show", "init"):
        return  # git's own commands are seen into
    decided = evaluate([Layer("sandbox", DENY_PUSH)], ActionRequest("shell", {"command": wrapped(data.draw, command)}))
    assert decided.decision != Decision.allow, command
    assert any(s.opaque and s.reason for s in segments(command)), command


@pytest.mark.parametrize(
    "command",
    [
        "git status",
        "git -C /workspace status",
        "git log --oneline -n 5",
        "python3 -m pytest -q",
        "python3 -m unittest",
        "ls -la /workspace",
        "awk '{print $1}' notes.txt",
        "/usr/bin/env python3 -m pytest",
        "cat README.md | grep fleetgate",
        "p() { echo hi; }; p",
    ],
)
def test_what_can_be_seen_into_is_judged_as_usual(command: str) -> None:
    assert decide(command) == Decision.allow, [(s.text, s.reason) for s in segments(command)]


def test_an_allow_rule_matches_only_the_command_as_written() -> None:
    """Options before a subcommand can change what it does (`-c core.pager=...`), so they are never skipped for
    an allow rule: `git -C /etc status` is not the `git status` that a person allowed."""
    policy = policy_from_value({"default": "ask", "rules": [{"tool": "shell", "command": "git status*",
                                                             "decision": "allow"}]})  # fmt: skip
    assert decide("git status", policy) == Decision.allow
    for command in ("git -C /etc status", "/tmp/git status", "git -c core.pager='rm -rf ~' status"):
        assert decide(command, policy) == Decision.ask, command


@pytest.mark.parametrize(
    "command",
    [
        "alias do='git push'; do",  # bash expands an alias named after a reserved word on a line of its own
        "alias do='git push'\ndo",
        "alias g=git; g push origin main",  # the alias is only part of the command
        "alias g='git -C .'\ng push",
    ],
)
def test_aliases_found_by_hypothesis_and_their_kin_are_denied(command: str) -> None:
    assert decide(command) == Decision.deny, [(s.text, s.reason) for s in segments(command)]
