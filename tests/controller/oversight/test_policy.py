"""The policy engine, table by table: matchers, tiers, defaults, layers, presets, shell segments, loading errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.errors import Invalid
from controller.oversight.policy import (
    ActionRequest,
    Decision,
    Layer,
    Policy,
    PolicyError,
    Risk,
    evaluate,
    load_policy,
    policy_from_value,
    preset,
)

ALLOW, ASK, DENY = Decision.allow, Decision.ask, Decision.deny


def policy(*rules: dict[str, Any], default: str = "ask") -> Policy:
    return policy_from_value({"default": default, "rules": list(rules)})


def decide(p: Policy, tool: str, args: dict[str, Any] | None = None, risk: str = "low") -> Decision:
    return evaluate([Layer("sandbox", p)], ActionRequest(tool, args or {}, Risk(risk))).decision


def arg_matches(matcher: Any, value: Any) -> bool:
    p = policy({"tool": "t", "args": {"v": matcher}, "decision": "allow"}, default="deny")
    return decide(p, "t", {"v": value}) == ALLOW


@pytest.mark.parametrize(
    ("matcher", "value", "matches"),
    [
        ("*.txt", "notes.txt", True),
        ("*.txt", "notes.py", False),
        ("*.txt", 5, False),
        ("main", "main", True),
        ("main", "Main", False),
        (">100", 150, True),
        (">100", 100, False),
        ("> 100", 100.5, True),
        (">100", "150", True),
        (">100", " 150 ", True),
        (">100", "1e3", True),
        (">100", True, False),
        (">100", "lots", False),
        (">100", None, False),
        (">100", [150], False),
        (">100", "nan", False),
        (">=100", 100, True),
        ("<5", 4.5, True),
        ("<5", -10, True),
        ("<=5", 5, True),
        ("<=5", "6", False),
        ("==3", 3.0, True),
        ("==3", "3", True),
        ("!=3", 4, True),
        ("!=3", 3, False),
        ("!=3", "three", False),
        ("!=3", False, False),
        (100, 100, True),
        (100, 100.0, True),
        (100, "100", True),
        (1, True, False),
        (True, True, True),
        (True, 1, False),
        (True, "true", False),
        (False, False, True),
        ({"path": "/workspace/**"}, "/workspace/src/a.py", True),
        ({"path": "/workspace/**"}, "src/a.py", True),
        ({"path": "/workspace/**"}, "/workspace", True),
        ({"path": "/workspace/**"}, "/workspace/../etc/passwd", False),
        ({"path": "/workspace/**"}, "../etc/passwd", False),
        ({"path": "/workspace/**"}, "/workspace/a/../../etc/passwd", False),
        ({"path": "/workspace/**"}, "/workspacex/a", False),
        ({"path": "/workspace/**"}, 7, False),
        ({"path": "/etc/**"}, "//etc/passwd", True),
        ({"path": "/etc/**"}, "/workspace/../etc/shadow", True),
        ({"path": "/workspace/*.py"}, "/workspace/a.py", True),
        ({"path": "/workspace/*.py"}, "/workspace/pkg/a.py", False),
        ({"path": "*.py"}, "a.py", True),
        ({"path": "/workspace/**/test_*.py"}, "/workspace/test_a.py", True),
        ({"path": "/workspace/**/test_*.py"}, "/workspace/a/b/test_a.py", True),
        ({"path": "/workspace/**/test_*.py"}, "/workspace/a/b/a_test.py", False),
        ({"path": "/workspace/[!.]*"}, "/workspace/.env", False),
        ({"regex": "v[0-9]+"}, "v12", True),
        ({"regex": "v[0-9]+"}, "xv12", False),
        ({"regex": "v[0-9]+"}, 12, False),
        ({"glob": ">5"}, ">5", True),
        ({"any": ["<0", ">100"]}, 150, True),
        ({"any": ["<0", ">100"]}, 50, False),
        ({"any": [{"path": "/tmp/**"}, "*.log"]}, "x.log", True),
        ({"in": ["a", 1]}, "a", True),
        ({"in": ["a", 1]}, 1.0, True),
        ({"in": ["a", 1]}, True, False),
        ({"in": [[1, 2], {"k": True}]}, [1, 2], True),
        ({"in": [[1, 2], {"k": True}]}, {"k": 1}, False),
        ({"in": [None]}, None, True),
    ],
)
def test_argument_matchers(matcher: Any, value: Any, matches: bool) -> None:
    assert arg_matches(matcher, value) is matches


def test_a_matcher_on_an_argument_the_action_lacks_does_not_match() -> None:
    p = policy({"tool": "t", "args": {"amount": "<100"}, "decision": "allow"}, default="deny")
    assert decide(p, "t", {}) == DENY


def test_all_matchers_of_a_rule_must_match() -> None:
    p = policy({"tool": "t", "args": {"a": "x", "b": ">1"}, "risk": "low", "decision": "allow"}, default="deny")
    assert [decide(p, "t", {"a": "x", "b": 2}), decide(p, "t", {"a": "x", "b": 0})] == [ALLOW, DENY]
    assert decide(p, "t", {"a": "x", "b": 2}, risk="high") == DENY


@pytest.mark.parametrize(
    ("tool_glob", "tool", "matches"),
    [
        ("payment.*", "payment.send", True),
        ("payment.*", "payments", False),
        ("*", "anything", True),
        ("read_?ile", "read_file", True),
        ("shell", "Shell", False),
    ],
)
def test_tool_globs(tool_glob: str, tool: str, matches: bool) -> None:
    p = policy({"tool": tool_glob, "decision": "allow"}, default="deny")
    assert (decide(p, tool) == ALLOW) is matches


@pytest.mark.parametrize(
    ("rule", "risk", "matches"),
    [
        ({"risk": "high"}, "high", True),
        ({"risk": "high"}, "critical", False),
        ({"risk": ["high", "critical"]}, "critical", True),
        ({"risk": ["high", "critical"]}, "medium", False),
        ({"risk_at_least": "medium"}, "low", False),
        ({"risk_at_least": "medium"}, "medium", True),
        ({"risk_at_least": "medium"}, "critical", True),
    ],
)
def test_risk_matchers(rule: dict[str, Any], risk: str, matches: bool) -> None:
    p = policy({"decision": "deny", **rule}, default="allow")
    assert (decide(p, "t", risk=risk) == DENY) is matches


@pytest.mark.parametrize(
    ("args", "matches"),
    [
        ({"method": "POST", "url": "https://api.example.com/v1/charges"}, True),
        ({"method": "post", "url": "https://API.Example.com./v1/charges"}, True),
        ({"method": "GET", "url": "https://api.example.com/v1/charges"}, False),
        ({"method": "POST", "url": "https://example.com/v1/charges"}, False),
        ({"method": "POST", "url": "https://api.example.com/v2/charges"}, False),
        ({"method": "POST", "url": "https://api.example.com/v1/../admin"}, False),
        ({"method": "POST", "url": "https://api.example.com/v1/%2e%2e/admin"}, False),
        ({"method": "POST", "url": "https://api.example.com@evil.test/v1/charges"}, False),
        ({"method": "POST", "url": "https://[::1/v1"}, False),
        ({"method": "POST"}, False),
        ({"url": "https://api.example.com/v1/charges"}, False),
        ({"method": 5, "url": "https://api.example.com/v1/charges"}, False),
    ],
)
def test_http_matcher(args: dict[str, Any], matches: bool) -> None:
    http = {"method": "POST", "host": "*.example.com", "path": "/v1/*"}
    p = policy({"tool": "http", "http": http, "decision": "allow"}, default="deny")
    assert (decide(p, "http", args) == ALLOW) is matches


def test_http_path_defaults_to_root_and_dot_segments_cannot_dodge_a_deny() -> None:
    p = policy({"tool": "http", "http": {"path": "/admin*"}, "decision": "deny"}, default="allow")
    assert decide(p, "http", {"url": "https://x.test/api/../admin/users"}) == DENY
    root = policy({"tool": "http", "http": {"path": "/"}, "decision": "deny"}, default="allow")
    assert decide(root, "http", {"url": "https://x.test"}) == DENY


def test_command_and_program_matchers_never_match_other_tools() -> None:
    p = policy({"command": "*", "decision": "deny"}, {"program": "*", "decision": "deny"}, default="allow")
    assert decide(p, "read_file", {"command": "rm x"}) == ALLOW
    assert decide(p, "shell", {"command": "ls"}) == DENY


def test_deny_rules_are_tried_before_ask_and_allow_rules_whatever_their_order() -> None:
    p = policy(
        {"tool": "t", "decision": "allow"},
        {"tool": "t", "decision": "ask"},
        {"tool": "t", "args": {"n": ">5"}, "decision": "deny"},
    )
    assert [decide(p, "t", {"n": 1}), decide(p, "t", {"n": 9})] == [ASK, DENY]


def test_within_a_tier_the_first_matching_rule_decides() -> None:
    p = policy(
        {"tool": "t", "decision": "ask", "quorum": 2, "name": "first"},
        {"tool": "*", "decision": "ask", "quorum": 3, "name": "second"},
    )
    verdict = evaluate([Layer("sandbox", p)], ActionRequest("t", {}))
    assert (verdict.quorum, verdict.rule_index, verdict.rule and verdict.rule.name) == (2, 0, "first")


@pytest.mark.parametrize("default", ["allow", "ask", "deny"])
def test_no_matching_rule_gives_the_default(default: str) -> None:
    verdict = evaluate(
        [Layer("template", policy({"tool": "x", "decision": "deny"}, default=default))], ActionRequest("y", {})
    )
    assert (verdict.decision, verdict.rule, verdict.layer) == (default, None, "template")
    assert verdict.reason == f"the default ({default}) of the template policy"
    assert (verdict.quorum, verdict.rememberable, verdict.on_timeout, verdict.escalate) == (1, True, DENY, False)


ALLOW_ALL = policy(default="allow")
DENY_T = policy({"tool": "t", "decision": "deny"}, default="allow")
ASK_T = policy({"tool": "t", "decision": "ask"}, default="allow")
ALLOW_T = policy({"tool": "t", "decision": "allow"}, default="deny")


@pytest.mark.parametrize(
    ("layers", "decision", "decided_by"),
    [
        ([("fleet", DENY_T), ("sandbox", ALLOW_T)], DENY, "fleet"),
        ([("fleet", ALLOW_ALL), ("sandbox", DENY_T)], DENY, "sandbox"),
        ([("fleet", ASK_T), ("template", ALLOW_T)], ASK, "fleet"),
        ([("fleet", ASK_T), ("template", ALLOW_T), ("sandbox", DENY_T)], DENY, "sandbox"),
        ([("fleet", ALLOW_ALL), ("template", ASK_T), ("sandbox", ALLOW_T)], ASK, "template"),
        ([("fleet", ALLOW_T), ("template", ALLOW_ALL), ("sandbox", ALLOW_T)], ALLOW, "fleet"),
    ],
)
def test_the_strictest_layer_wins_and_ties_go_to_the_higher_layer(
    layers: list[tuple[str, Policy]], decision: Decision, decided_by: str
) -> None:
    verdict = evaluate([Layer(n, p) for n, p in layers], ActionRequest("t", {}))
    assert (verdict.decision, verdict.layer) == (decision, decided_by)


def test_layers_reaching_the_same_answer_combine_their_settings_strictly() -> None:
    fleet = policy({"tool": "wire", "decision": "ask", "quorum": 2, "timeout_s": 600}, default="allow")
    sandbox = policy({"tool": "wire", "decision": "ask", "rememberable": False, "timeout_s": 60}, default="allow")
    verdict = evaluate([Layer("fleet", fleet), Layer("sandbox", sandbox)], ActionRequest("wire", {}))
    assert (verdict.layer, verdict.quorum, verdict.timeout_s, verdict.rememberable) == ("fleet", 2, 60, False)


def test_no_layers_means_a_person_decides() -> None:
    verdict = evaluate([], ActionRequest("t", {}))
    assert (verdict.decision, verdict.layer, verdict.rule) == (ASK, None, None)
    assert "no policy" in verdict.reason


DESTRUCTIVE = [
    "rm -rf /",
    "sudo rm -rf /*",
    "rm -rf --no-preserve-root /",
    "cd / && rm -fr / tmp",
    "mkfs.ext4 /dev/sda1",
    "mkfs -t xfs /dev/vdb",
    "dd if=/dev/zero of=/dev/sda bs=1M",
    "shutdown -h now",
    "sudo reboot",
    "poweroff",
]


@pytest.mark.parametrize("name", ["autonomous", "supervised", "strict"])
@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_every_preset_denies_the_destructive_list(name: str, command: str) -> None:
    assert decide(preset(name), "shell", {"command": command}) == DENY


@pytest.mark.parametrize(
    ("name", "tool", "args", "risk", "decision"),
    [
        ("autonomous", "shell", {"command": "rm -rf build/"}, "critical", ALLOW),
        ("autonomous", "shell", {"command": "dd if=a.img of=/dev/null"}, "low", ALLOW),
        ("autonomous", "payment.send", {"amount": 10_000}, "critical", ALLOW),
        ("autonomous", "shell", {"command": "$EDITOR notes.txt"}, "low", ASK),
        ("supervised", "read_file", {"path": "a.txt"}, "low", ALLOW),
        ("supervised", "shell", {"command": "ls -la"}, "low", ALLOW),
        ("supervised", "shell", {"command": "git push"}, "medium", ASK),
        ("supervised", "payment.send", {}, "critical", ASK),
        ("strict", "read_file", {"path": "a.txt"}, "low", ASK),
        ("strict", "shell", {"command": "ls"}, "low", ASK),
    ],
)
def test_presets(name: str, tool: str, args: dict[str, Any], risk: str, decision: Decision) -> None:
    assert decide(preset(name), tool, args, risk) == decision


def test_a_preset_is_also_a_policy_value_and_unknown_names_list_the_valid_ones() -> None:
    assert policy_from_value("supervised") is preset("supervised")
    with pytest.raises(PolicyError, match="autonomous, supervised, strict"):
        policy_from_value("lenient")


def test_preset_reasons_name_the_preset() -> None:
    verdict = evaluate([Layer("sandbox", preset("strict"))], ActionRequest("shell", {"command": "sudo reboot"}))
    assert "strict preset" in verdict.reason
    assert verdict.line is not None


SHELL_POLICY = policy(
    {"tool": "shell", "command": ["pytest*", "ls*", "cat *", "echo *", "xargs*", "find *"], "decision": "allow"},
    {
        "tool": "shell",
        "program": ["sh", "bash", "env", "sudo", "nice", "timeout", "command", "exec", "busybox"],
        "decision": "allow",
    },
    {"tool": "shell", "program": "rm", "decision": "deny", "message": "no rm"},
    {"tool": "shell", "command": "git push*", "decision": "deny"},
)


@pytest.mark.parametrize(
    "command",
    [
        "pytest && git push",
        "xargs rm",
        "echo x | xargs -n1 rm",
        "sh -c 'rm -rf /'",
        'bash -c "ls; rm x"',
        "env X=1 rm x",
        "X=1 rm x",
        "sudo -u root rm x",
        "nice -n 5 rm x",
        "timeout 5 rm x",
        "find . -name '*.pyc' -exec rm {} \\;",
        'eval "rm x"',
        "ls; rm x",
        "ls & rm x",
        "ls || rm x",
        "ls $(rm x)",
        "ls `rm x`",
        "ls\nrm x",
        "(rm x)",
        "{ rm x; }",
        "command rm x",
        "exec rm x",
        "busybox rm x",
        "/bin/rm x",
        "echo ok; sudo env X=1 nice -n 5 sh -c 'xargs rm'",
        "$'\\x72m' x",
        "ls | xargs git push",
    ],
)
def test_a_denied_program_cannot_slip_past_in_a_compound_or_wrapped_command(command: str) -> None:
    assert decide(SHELL_POLICY, "shell", {"command": command}) == DENY


@pytest.mark.parametrize("command", ["$(echo rm) x", "$CMD x", "r[m] x", "echo rm | sh", "ls; eval ls"])
def test_opaque_segments_are_never_allowed(command: str) -> None:
    assert decide(SHELL_POLICY, "shell", {"command": command}) == ASK
    assert decide(policy(default="allow"), "shell", {"command": command}) == ASK


@pytest.mark.parametrize(
    "command", ["pytest -q && ls", "echo 'a && rm x'", "ls -la | cat notes.txt", 'echo "don\'t; rm x"', "ls # rm x"]
)
def test_commands_made_only_of_allowed_segments_are_allowed(command: str) -> None:
    assert decide(SHELL_POLICY, "shell", {"command": command}) == ALLOW


def test_shell_verdict_names_the_deciding_segment_and_keeps_every_segment() -> None:
    verdict = evaluate([Layer("sandbox", SHELL_POLICY)], ActionRequest("shell", {"command": "pytest && git push"}))
    assert verdict.reason.startswith("`git push`: rule 4 of the sandbox policy")
    assert [(v.segment and v.segment.text, v.decision) for v in verdict.segments] == [
        ("pytest", ALLOW),
        ("git push", DENY),
    ]
    record = verdict.to_record()
    assert [s["command"] for s in record["segments"]] == ["pytest", "git push"]
    assert json.loads(json.dumps(record)) == record


def test_args_matchers_see_each_segments_command_and_argv() -> None:
    p = policy({"tool": "shell", "args": {"command": "git push*"}, "decision": "deny"}, default="allow")
    assert decide(p, "shell", {"command": "ls && git push origin"}) == DENY
    argv = policy(
        {"tool": "shell", "args": {"argv": {"in": [["rm", "-rf", "/"]]}}, "decision": "deny"}, default="allow"
    )
    assert decide(argv, "shell", {"command": "ls; rm  -rf  '/'"}) == DENY


@pytest.mark.parametrize(
    ("args", "decision"),
    [
        ({"command": ""}, ALLOW),
        ({"command": "   "}, ALLOW),
        ({}, ASK),
        ({"command": 5}, ASK),
        ({"command": ["rm", "-rf", "x"]}, DENY),
        ({"command": ["ls", "a; rm x"]}, ALLOW),
    ],
)
def test_shell_commands_that_are_empty_missing_or_lists(args: dict[str, Any], decision: Decision) -> None:
    p = policy({"tool": "shell", "program": "rm", "decision": "deny"}, default="allow")
    assert decide(p, "shell", args) == decision


def test_rule_settings_are_carried_into_the_verdict() -> None:
    p = load_policy(
        "default: allow\nrules:\n"
        "  - tool: wire\n    decision: ask\n    approvers: [admin, user:alice]\n    quorum: 2\n"
        "    timeout_s: 60\n    on_timeout: allow\n    rememberable: false\n    message: wires need two people\n",
        source="p.yaml",
    )
    verdict = evaluate([Layer("fleet", p)], ActionRequest("wire", {"amount": 5}, Risk.critical))
    assert (verdict.approvers, verdict.quorum, verdict.timeout_s) == (("admin", "user:alice"), 2, 60)
    assert (verdict.on_timeout, verdict.rememberable, verdict.message) == (ALLOW, False, "wires need two people")
    record = verdict.to_record()
    assert (record["rule"], record["line"], record["layer"], record["approvers"]) == (
        0,
        3,
        "fleet",
        ["admin", "user:alice"],
    )
    assert record["reason"] == "rule 1 (line 3) of the fleet policy: ask wire"


def test_a_deny_rule_can_escalate_and_says_why() -> None:
    p = policy(
        {"tool": "payment.*", "args": {"amount": ">100"}, "decision": "deny", "escalate": True, "message": "too much"}
    )
    verdict = evaluate([Layer("fleet", p)], ActionRequest("payment.send", {"amount": 150}))
    assert (verdict.decision, verdict.escalate, verdict.message) == (DENY, True, "too much")
    assert verdict.reason == "rule 1 of the fleet policy: deny payment.* when amount > 100"


def test_segments_asking_under_different_rules_combine_their_settings_strictly() -> None:
    p = policy(
        {
            "tool": "shell",
            "program": "pip",
            "decision": "ask",
            "quorum": 1,
            "approvers": ["approver"],
            "timeout_s": 600,
        },
        {
            "tool": "shell",
            "program": "git",
            "decision": "ask",
            "quorum": 2,
            "approvers": ["admin"],
            "rememberable": False,
            "timeout_s": 60,
        },
    )
    verdict = evaluate([Layer("sandbox", p)], ActionRequest("shell", {"command": "pip install x && git push"}))
    assert (verdict.decision, verdict.quorum, verdict.timeout_s, verdict.rememberable) == (ASK, 2, 60, False)
    assert verdict.approvers == ("admin",)


def test_action_risk_may_be_given_as_text() -> None:
    assert ActionRequest("t", {}, "high").risk is Risk.high  # type: ignore[arg-type]
    assert Risk.low < Risk.medium < Risk.high < Risk.critical
    assert Risk.critical >= "high"
    assert Decision.allow < Decision.ask < Decision.deny
    assert max([Decision.deny, Decision.allow, Decision.ask]) == Decision.deny


def test_examples_are_checked_when_the_policy_loads() -> None:
    text = (
        "default: ask\nrules:\n"
        "  - tool: payment.*\n    args: {amount: '>100'}\n    decision: deny\n"
        "    match: [{tool: payment.send, args: {amount: 150}}]\n"
        "    not_match:\n      - {tool: payment.send, args: {amount: 50}}\n"
    )
    assert load_policy(text).rules[0].decision == DENY
    wrong = text.replace("amount: 50", "amount: 500")
    with pytest.raises(PolicyError) as caught:
        load_policy(wrong, source="p.yaml")
    assert caught.value.message == (
        "p.yaml line 8: rules[0].not_match[0]: rule 1 (line 3) matches this example, which it must not"
    )
    missing = text.replace("amount: 150", "amount: 15")
    with pytest.raises(PolicyError, match=r"^p.yaml line 6: rules\[0\].match\[0\]: rule 1 \(line 3\) does not match"):
        load_policy(missing, source="p.yaml")


def test_shell_examples_mean_catch_for_deny_rules_and_cover_for_allow_rules() -> None:
    policy_from_value(
        {
            "default": "ask",
            "rules": [
                {
                    "tool": "shell",
                    "program": "rm",
                    "decision": "deny",
                    "match": [{"tool": "shell", "args": {"command": "ls; rm x"}}],
                },
                {
                    "tool": "shell",
                    "command": "pytest*",
                    "decision": "allow",
                    "match": [{"tool": "shell", "args": {"command": "pytest -q"}}],
                    "not_match": [
                        {"tool": "shell", "args": {"command": "pytest && rm x"}},
                        {"tool": "shell", "args": {"command": "$X"}},
                    ],
                },
            ],
        }
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "default: ask\nrules:\n  - tool: x\n    decision: permit\n",
            'p.yaml line 4: rules[0].decision: must be one of allow, ask, deny (got "permit")',
        ),
        (
            "default: ask\nrules:\n  - tool: x\n    decison: deny\n",
            "p.yaml line 4: rules[0].decison: unknown key; the keys of a rule are name, tool, decision,",
        ),
        ("default: ask\nrules:\n  - tool: x\n", "p.yaml line 3: rules[0]: decision is required"),
        ("rules: []\n", "p.yaml line 1: default is required"),
        ("default: ask\nrule: []\n", "p.yaml line 2: rule: unknown key"),
        ("default: maybe\n", 'p.yaml line 1: default: must be one of allow, ask, deny (got "maybe")'),
        ("default: ask\nrules: {}\n", "p.yaml line 2: rules: must be a list of rules"),
        (
            "default: ask\nrules:\n  - decision: deny\n    args:\n      path: {regex: '('}\n",
            "p.yaml line 5: rules[0].args.path.regex: bad regular expression '('",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    args: {n: '>lots'}\n",
            'p.yaml line 4: rules[0].args.n: > must be followed by a number (got "lots")',
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    args: {n: [1, 2]}\n",
            "p.yaml line 4: rules[0].args.n: must be a glob, a comparison",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    args: {n: {any: []}}\n",
            "p.yaml line 4: rules[0].args.n.any: must be a non-empty list of matchers",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    risk: extreme\n",
            'p.yaml line 4: rules[0].risk: must be one of low, medium, high, critical (got "extreme")',
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    quorum: 0\n",
            "p.yaml line 4: rules[0].quorum: must be at least 1",
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    quorum: two\n",
            "p.yaml line 4: rules[0].quorum: must be a whole number",
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    timeout_s: -5\n",
            "p.yaml line 4: rules[0].timeout_s: must be at least 1",
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    timeout_s: 1000000000000000000000000000000\n",
            "p.yaml line 4: rules[0].timeout_s: must be at most 2592000 (30 days; got 1000000000000000000000000000000)",
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    quorum: 21\n",
            "p.yaml line 4: rules[0].quorum: must be at most 20 (got 21)",
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    on_timeout: ask\n",
            'p.yaml line 4: rules[0].on_timeout: must be one of deny, allow (got "ask")',
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    approvers: [admin, viewer]\n",
            'p.yaml line 4: rules[0].approvers[1]: must be admin, operator, approver or user:NAME (got "viewer")',
        ),
        (
            "default: ask\nrules:\n  - decision: ask\n    rememberable: maybe\n",
            'p.yaml line 4: rules[0].rememberable: must be true or false (got "maybe")',
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    http: {verb: POST}\n",
            "p.yaml line 4: rules[0].http: must be a mapping",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    command: []\n",
            "p.yaml line 4: rules[0].command: must be a glob",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    tool: ''\n",
            "p.yaml line 4: rules[0].tool: must be a non-empty glob",
        ),
        (
            "default: ask\nrules:\n  - decision: deny\n    decision: allow\n",
            "p.yaml line 4: rules[0].decision: duplicate key",
        ),
        ("default: ask\nrules:\n  - tool: x\n   decision: deny\n", "p.yaml line 4: "),
        ("default: [ask\n", "p.yaml line 2: "),
        ("", "p.yaml: must be a mapping"),
        ("- just a list\n", "p.yaml line 1: must be a mapping"),
    ],
)
def test_yaml_errors_name_the_line_and_the_path(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="p.yaml")
    assert caught.value.message.startswith(message)
    assert "\n" not in caught.value.message


def test_json_text_is_read_by_the_same_loader_with_lines() -> None:
    text = '{\n  "default": "ask",\n  "rules": [\n    {"tool": "x",\n     "decision": "permit"}\n  ]\n}\n'
    with pytest.raises(
        PolicyError,
        match=r'^policy.json line 5: rules\[0\].decision: must be one of allow, ask, deny \(got "permit"\)$',
    ):
        load_policy(text, source="policy.json")
    with pytest.raises(PolicyError, match=r"^policy.json line 3: "):
        load_policy('{"default": "ask",\n "rules": [\n}', source="policy.json")
    tabs = '{\n\t"default": "deny",\n\t"rules": [{"tool": "x", "decision": "allow"}]\n}'
    assert decide(load_policy(tabs), "x") == ALLOW


def test_parsed_documents_name_the_json_path_instead_of_a_line() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_value({"default": "ask", "rules": [{"tool": "x", "decision": "allow"}, {"decision": "permit"}]})
    assert caught.value.message == 'policy: rules[1].decision: must be one of allow, ask, deny (got "permit")'


def test_policy_errors_are_invalid_input() -> None:
    assert issubclass(PolicyError, Invalid)
    assert PolicyError("x").status_code == 422


def test_documents_too_large_to_check_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    with pytest.raises(PolicyError, match="more than"):
        load_policy(bomb)


def test_the_description_is_kept_and_must_be_text() -> None:
    assert load_policy("description: for CI agents\ndefault: deny\n").description == "for CI agents"
    with pytest.raises(PolicyError, match="description: must be a string"):
        load_policy("description: [1]\ndefault: deny\n")
