"""Properties: a denied segment is caught wherever it hides; allowed-only commands stay allowed; nothing raises."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.oversight.policy import (
    RULE_KEYS,
    ActionRequest,
    Decision,
    Layer,
    Policy,
    PolicyError,
    Risk,
    evaluate,
    load_policy,
    policy_from_value,
)
from controller.oversight.shell import segments

POLICY = policy_from_value(
    {
        "default": "ask",
        "rules": [
            {"tool": "shell", "program": ["pytest", "ls", "cat", "echo", "true"], "decision": "allow"},
            {
                "tool": "shell",
                "program": ["sh", "bash", "env", "nice", "timeout", "sudo", "xargs"],
                "decision": "allow",
            },
            {"tool": "shell", "program": "rm", "decision": "deny"},
            {"tool": "shell", "command": "git push*", "decision": "deny"},
        ],
    }
)
SEPARATORS = [";", "&&", "||", "|", "&", "\n"]
WRAPPERS = ["env X=1 {}", "X=1 {}", "nice {}", "nice -n 5 {}", "timeout 3 {}", "sudo {}", "sudo -u root {}",
            "xargs {}", "xargs -n 1 {}", "sh -c {q}", "bash -c {q}"]  # fmt: skip
GROUPS = ["{}", "({})", "{{ {}; }}", "echo $({})", "echo x | {}"]

words = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
quoted_args = st.lists(words.map(shlex.quote), max_size=3)


@st.composite
def allowed_segment(draw: st.DrawFn) -> str:
    return " ".join([draw(st.sampled_from(["pytest", "ls", "cat", "echo", "true"])), *draw(quoted_args)])


@st.composite
def denied_segment(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["rm", "/bin/rm", "git push", "git push origin main"]))
    command = " ".join([head, *draw(quoted_args)])
    for wrapper in draw(st.lists(st.sampled_from(WRAPPERS), max_size=3)):
        command = wrapper.format(command, q=shlex.quote(command))
    return draw(st.sampled_from(GROUPS)).format(command)


def join(parts: list[str], seps: list[str], spaces: list[bool]) -> str:
    command = parts[0]
    for part, sep, space in zip(parts[1:], seps, spaces, strict=False):
        command += f" {sep} {part}" if space else f"{sep}{part}"
    return command


def decide(command: str) -> Decision:
    return evaluate([Layer("sandbox", POLICY)], ActionRequest("shell", {"command": command})).decision


@settings(max_examples=400, deadline=None)
@given(
    allowed=st.lists(allowed_segment(), max_size=4),
    denied=denied_segment(),
    position=st.integers(min_value=0),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=5, max_size=5),
    spaces=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_a_denied_segment_anywhere_denies_the_whole_command(
    allowed: list[str], denied: str, position: int, seps: list[str], spaces: list[bool]
) -> None:
    parts = list(allowed)
    parts.insert(position % (len(parts) + 1), denied)
    command = join(parts, seps, spaces)
    assert decide(command) == Decision.deny, command


@settings(max_examples=300, deadline=None)
@given(
    allowed=st.lists(allowed_segment(), min_size=1, max_size=5),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=5, max_size=5),
    spaces=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_a_command_of_allowed_segments_only_is_allowed(allowed: list[str], seps: list[str], spaces: list[bool]) -> None:
    command = join(allowed, seps, spaces)
    assert decide(command) == Decision.allow, command


@settings(max_examples=300, deadline=None)
@given(args=st.lists(words, max_size=6))
def test_quoted_arguments_come_back_exactly_as_shlex_quoted_them(args: list[str]) -> None:
    (segment,) = segments(shlex.join(["echo", *args]))
    assert segment.argv == ["echo", *args]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="ab $(){}`'\"\\;&|<>\n#=-", max_size=60))
def test_segments_never_raise_on_arbitrary_text(text: str) -> None:
    for segment in segments(text):
        assert isinstance(segment.program, str)
        assert segment.opaque == (segment.reason is not None)
    assert decide(text) in set(Decision)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["*", ">5", "<=1e3", "a", "ask"])
values = st.recursive(
    scalars | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["path", "regex", "glob", "any", "in", "x", "url"]), inner, max_size=2)
    ),
    max_leaves=12,
)
rules = st.dictionaries(st.sampled_from([*RULE_KEYS, "extra"]), values, max_size=5).map(
    lambda rule: {"decision": "deny", **rule}
)


def loaded_or_error(load: Callable[[], Policy]) -> Policy | str:
    try:
        return load()
    except PolicyError as e:
        return e.message


@settings(max_examples=400, deadline=None)
@given(
    rules=st.lists(rules, max_size=3),
    args=st.dictionaries(st.sampled_from(["command", "path", "url", "method", "amount"]), values, max_size=3),
    tool=st.sampled_from(["shell", "http", "x"]),
    risk=st.sampled_from(list(Risk)),
)
def test_any_document_either_loads_or_is_a_policy_error_and_loaded_ones_decide(
    rules: list[dict[str, object]], args: dict[str, object], tool: str, risk: Risk
) -> None:
    loaded = loaded_or_error(lambda: policy_from_value({"default": "allow", "rules": rules}))
    if isinstance(loaded, str):
        assert loaded.startswith("policy: ")
    else:
        assert evaluate([Layer("sandbox", loaded)], ActionRequest(tool, args, risk)).decision in set(Decision)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_text_either_loads_or_is_a_one_line_policy_error(text: str) -> None:
    loaded = loaded_or_error(lambda: load_policy(text, source="p.yaml"))
    if isinstance(loaded, str):
        assert loaded.startswith("p.yaml")
        assert "\n" not in loaded
