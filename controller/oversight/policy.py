"""Policies: rule documents, presets, loading with line numbers, and layered evaluation of actions.

An action is `(tool, args, risk)`. Within a layer, deny rules are tried first, then ask, then allow; the first
match (in document order) of a tier wins, else the layer's default. Across layers (fleet > template > sandbox) the
strictest answer wins and ties go to the higher layer, so a lower layer can tighten but never loosen. A `shell`
action is judged per segment (see shell.py) and gets its strictest segment's answer. Choices beyond the spec:

- `default` is required: with strictest-wins, an omitted default would silently decide for every other layer.
- An opaque shell segment is never allowed, by a rule or by a default: allow becomes ask; deny rules still apply.
- A shell action whose `command` is a list of strings is judged as their shell-quoted join; one whose command is
  missing or not a string is one opaque segment; an empty command is judged once, as it is.
- When several layers or segments reach the same answer, the reason is the first one's, but their terms (a
  default's are the defaults) combine strictly: the largest quorum, the shortest timeout, `on_timeout: allow`
  only if all say so, rememberable only if all are, escalate if any does, the first message, and approvers that
  satisfy every rule (roles rank admin > operator > approver), else `admin`.
- Examples (`match` / `not_match`) on a shell action: a deny or ask rule matches when it matches any segment (it
  would catch the command); an allow rule only when it matches every segment and none is opaque (it alone would
  let the command through).
- YAML duplicate keys are errors (a later `decision:` must not silently replace an earlier one); JSON text that
  YAML cannot read (tab indentation) is read as JSON, and its errors then name the JSON path instead of a line.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from functools import cache, cached_property
from typing import Any, NamedTuple

import yaml

from controller.errors import Invalid
from controller.oversight import shell
from controller.oversight.matchers import RISK_LEVELS, Check, Place, SpecError, choice, rule_checks, show
from controller.oversight.shell import Segment

ROLES = ("admin", "operator", "approver")  # strongest first
RULE_KEYS = (
    "name", "tool", "decision", "risk", "risk_at_least", "args", "command", "program", "http", "message",
    "approvers", "quorum", "timeout_s", "on_timeout", "rememberable", "escalate", "match", "not_match",
)  # fmt: skip
MAX_NODES = 20_000
MAX_QUORUM = 20  # approvers needed for one decision
MAX_TIMEOUT_S = 30 * 24 * 3600  # the longest an approval may wait before its default applies


class _Ranked(StrEnum):
    """Members compare by their place in the declaration, not as text ("high" < "critical")."""

    @property
    def rank(self) -> int:
        return list(type(self)).index(self)

    def __lt__(self, other: str) -> bool:
        return self.rank < type(self)(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= type(self)(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > type(self)(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= type(self)(other).rank


class Risk(_Ranked):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Decision(_Ranked):
    """allow < ask < deny: the order of strictness."""

    allow = "allow"
    ask = "ask"
    deny = "deny"


class PolicyError(Invalid):
    """A policy that cannot be used; the message names the line (or JSON path) and what to write instead."""


@dataclass(frozen=True)
class ActionRequest:
    """What an agent proposes: a tool, its arguments and the risk it declares (text is turned into a Risk)."""

    tool: str
    args: dict[str, Any]
    risk: Risk = Risk.low

    def __post_init__(self) -> None:
        object.__setattr__(self, "risk", Risk(self.risk))


@dataclass(frozen=True)
class RuleTerms:
    """What a rule tells the approval queue and the agent (who approves, how many, by when, ...)."""

    message: str | None = None
    approvers: tuple[str, ...] = ()
    quorum: int = 1
    timeout_s: int | None = None
    on_timeout: Decision = Decision.deny
    rememberable: bool = True
    escalate: bool = False


@dataclass(frozen=True)
class Rule:
    """One compiled rule: its decision, its checks (all must pass) and the terms it hands on."""

    index: int
    decision: Decision
    tool: str
    checks: tuple[Check, ...]
    terms: RuleTerms
    summary: str
    name: str | None = None
    line: int | None = None

    def matches(self, action: ActionRequest, segment: Segment | None = None) -> bool:
        """Whether the action (for shell: this one segment of it) satisfies every matcher of the rule."""
        return all(check(action, segment) for check in self.checks)

    def catches(self, action: ActionRequest) -> bool:
        """Whether the rule matches the whole action, as its `match` / `not_match` examples mean it."""
        if action.tool != "shell":
            return self.matches(action)
        hits = [not (s.opaque and self.decision == Decision.allow) and self.matches(a, s) for a, s in _split(action)]
        return all(hits) if self.decision == Decision.allow else any(hits)

    def label(self) -> str:
        """How reasons name the rule: `rule 3 "name" (line 14)`, counting from 1."""
        name = f' "{self.name}"' if self.name else ""
        return f"rule {self.index + 1}{name}" + (f" (line {self.line})" if self.line else "")


@dataclass(frozen=True)
class Policy:
    """A loaded policy document: a default and rules; `source` names where it came from in errors.

    `separation_of_duties`: whoever started a sandbox may not approve its actions, checkpoints or escalations
    (another approver must). Off unless a layer turns it on; any layer that does, the fleet's included, wins.
    """

    default: Decision
    rules: tuple[Rule, ...] = ()
    description: str | None = None
    source: str = "policy"
    preset: str | None = None
    separation_of_duties: bool = False

    @cached_property
    def ordered(self) -> tuple[Rule, ...]:
        """The rules in the order they are tried: deny, then ask, then allow; document order within each."""
        return tuple(sorted(self.rules, key=lambda r: (-r.decision.rank, r.index)))


class Layer(NamedTuple):
    """One level of the stack: its name (fleet, template or sandbox) and its policy."""

    name: str  # "fleet" | "template" | "sandbox"
    policy: Policy


@dataclass(frozen=True, kw_only=True)
class Verdict(RuleTerms):
    """What the policy decided, what decided it, and (as RuleTerms) what the approval queue needs."""

    decision: Decision
    layer: str | None
    rule: Rule | None = None
    reason: str
    segment: Segment | None = None
    segments: tuple[Verdict, ...] = ()

    @property
    def rule_index(self) -> int | None:
        return None if self.rule is None else self.rule.index

    @property
    def line(self) -> int | None:
        return None if self.rule is None else self.rule.line

    @property
    def terms(self) -> RuleTerms:
        return RuleTerms(**{f.name: getattr(self, f.name) for f in fields(RuleTerms)})

    def to_record(self) -> dict[str, Any]:
        """The verdict as plain JSON, with one entry per shell segment."""
        terms = {f.name: getattr(self, f.name) for f in fields(RuleTerms)}
        segments = [v._brief() | {"command": v.segment.text, "program": v.segment.program, "opaque": v.segment.opaque}
                    for v in self.segments if v.segment is not None]  # fmt: skip
        plain = {"approvers": list(self.approvers), "on_timeout": str(self.on_timeout), "segments": segments}
        return self._brief() | terms | plain

    def _brief(self) -> dict[str, Any]:
        name = None if self.rule is None else self.rule.name
        return {"decision": str(self.decision), "layer": self.layer, "rule": self.rule_index, "rule_name": name,
                "line": self.line, "reason": self.reason}  # fmt: skip


def evaluate(layers: Sequence[Layer], action: ActionRequest) -> Verdict:
    """Decide an action against the layers, given from the fleet (top) down to the sandbox."""
    if not layers:
        return Verdict(decision=Decision.ask, layer=None, reason="no policy applies, so a person decides")
    if action.tool != "shell":
        return _across(layers, action, None)
    parts = [_segment_verdict(layers, a, s) for a, s in _split(action)]
    top = max(parts, key=lambda v: v.decision.rank)
    tied = [v.terms for v in parts if v.decision == top.decision]
    reason = top.reason if len(parts) == 1 or top.segment is None else f"`{top.segment.text}`: {top.reason}"
    return replace(top, reason=reason, segments=tuple(parts), **vars(_combine(tied)))


def _split(action: ActionRequest) -> list[tuple[ActionRequest, Segment]]:
    command = action.args.get("command")
    if isinstance(command, list) and all(isinstance(word, str) for word in command):
        command = shlex.join(command)
    if not isinstance(command, str):
        found = [Segment([], "", "", opaque=True, reason="the command is not a string")]
    else:
        found = shell.segments(command) or [Segment(command.split(), command.strip(), "")]
    return [(replace(action, args={**action.args, "command": s.text, "argv": s.argv}), s) for s in found]


def _segment_verdict(layers: Sequence[Layer], action: ActionRequest, segment: Segment) -> Verdict:
    verdict = _across(layers, action, segment)
    if segment.opaque and verdict.decision == Decision.allow:
        why = f"{segment.reason}, so it needs a person even though {verdict.reason} would allow it"
        return replace(verdict, decision=Decision.ask, reason=why)
    return verdict


def _across(layers: Sequence[Layer], action: ActionRequest, segment: Segment | None) -> Verdict:
    verdicts = [_within(layer, action, segment) for layer in layers]
    top = max(verdicts, key=lambda v: v.decision.rank)  # max keeps the first (highest) layer on ties
    return replace(top, **vars(_combine([v.terms for v in verdicts if v.decision == top.decision])))


def _within(layer: Layer, action: ActionRequest, segment: Segment | None) -> Verdict:
    policy = layer.policy
    where = f"the {layer.name} policy" + (f" (the {policy.preset} preset)" if policy.preset else "")
    rule = next((r for r in policy.ordered if r.matches(action, segment)), None)
    if rule is None:
        why = f"the default ({policy.default}) of {where}"
        return Verdict(decision=policy.default, layer=layer.name, reason=why, segment=segment)
    why = f"{rule.label()} of {where}: {rule.summary}"
    return Verdict(decision=rule.decision, layer=layer.name, rule=rule, reason=why, segment=segment, **vars(rule.terms))


def _combine(terms: list[RuleTerms]) -> RuleTerms:
    if len(set(terms)) == 1:
        return terms[0]
    timeouts = [s.timeout_s for s in terms if s.timeout_s is not None]
    return RuleTerms(
        message=next((s.message for s in terms if s.message), None),
        approvers=_approvers([s.approvers for s in terms if s.approvers]),
        quorum=max(s.quorum for s in terms),
        timeout_s=min(timeouts) if timeouts else None,
        on_timeout=Decision.allow if all(s.on_timeout == Decision.allow for s in terms) else Decision.deny,
        rememberable=all(s.rememberable for s in terms),
        escalate=any(s.escalate for s in terms),
    )


def _approvers(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Entries that satisfy every list (a role satisfies a list naming it or a weaker role), else admin."""
    if len(set(lists)) <= 1:
        return lists[0] if lists else ()

    def satisfies(entry: str, wanted: tuple[str, ...]) -> bool:
        stronger = entry in ROLES and any(r in ROLES and ROLES.index(entry) <= ROLES.index(r) for r in wanted)
        return entry in wanted or stronger

    entries = dict.fromkeys(e for entries in lists for e in entries)
    return tuple(e for e in entries if all(satisfies(e, wanted) for wanted in lists)) or ("admin",)


_DENY_LIST = """\
  - name: destructive programs
    tool: shell
    program: [mkfs, "mkfs.*", wipefs, shutdown, reboot, poweroff, halt]
    decision: deny
    message: this program can destroy the machine or stop it; fleetgate presets never run it
    match: [{tool: shell, args: {command: "sudo mkfs.ext4 /dev/sda1"}}]
  - name: wiping the root
    tool: shell
    command: ["rm /", "rm / *", "rm * /", "rm * / *", "rm /[*]", "rm /[*] *", "rm * /[*]", "rm * /[*] *",
              "rm *--no-preserve-root*"]
    decision: deny
    message: this removes the whole file system; fleetgate presets never run it
    match: [{tool: shell, args: {command: "cd /tmp && rm -rf /"}}]
    not_match: [{tool: shell, args: {command: "rm -rf /workspace/build"}}]
  - name: writing to a device
    tool: shell
    command: ["dd *of=/dev/[shv]d*", "dd *of=/dev/xvd*", "dd *of=/dev/nvme*", "dd *of=/dev/mmcblk*",
              "dd *of=/dev/disk/*", "dd *of=/dev/mapper/*", "dd *of=/dev/dm-*", "dd *of=/dev/md*", "dd *of=/dev/loop*"]
    decision: deny
    message: dd to a device overwrites a disk; fleetgate presets never run it
    match: [{tool: shell, args: {command: "dd if=/dev/zero of=/dev/sda bs=1M"}}]
    not_match: [{tool: shell, args: {command: "dd if=/dev/zero of=/dev/null bs=1M count=1"}}]
"""
PRESETS = {
    "autonomous": "description: allow everything but a short deny list (every action is still logged)\n"
    "default: allow\nrules:\n" + _DENY_LIST,
    "supervised": "description: allow low-risk actions, ask a person from medium risk up\n"
    "default: ask\nrules:\n" + _DENY_LIST + "  - {name: low risk, risk: low, decision: allow}\n",
    "strict": "description: ask a person before every action\ndefault: ask\nrules:\n" + _DENY_LIST,
}


@cache
def preset(name: str) -> Policy:
    """One of the built-in policies: autonomous, supervised or strict."""
    if name not in PRESETS:
        raise PolicyError(f"unknown policy preset {name!r}; the presets are {', '.join(PRESETS)}")
    return replace(load_policy(PRESETS[name], source=f"{name} preset"), preset=name)


def load_policy(text: str, source: str = "policy") -> Policy:
    """A policy from YAML or JSON text; an error names the line it is about."""
    value, lines = _parse(text, source)
    return _document(value, source, lines)


def policy_from_value(value: str | dict[str, Any]) -> Policy:
    """A preset by name, or an already-parsed document (errors name the JSON path)."""
    if isinstance(value, str):
        return preset(value.strip())
    return _document(value, "policy", None)


Lines = dict[Place, int]


def _parse(text: str, source: str) -> tuple[Any, Lines | None]:
    try:
        node, value = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        return _as_json(text, f"{source} line {mark.line + 1}" if mark else source, str(e.problem or e))
    except yaml.YAMLError as e:
        return _as_json(text, source, str(e))
    except RecursionError:
        raise PolicyError(f"{source}: nested too deeply to read") from None
    lines: Lines = {}
    if node is not None:
        _index(node, (), lines, source)
    return value, lines


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the value of one YAML document, read once."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _as_json(text: str, where: str, problem: str) -> tuple[Any, None]:
    try:
        return json.loads(text), None
    except (ValueError, RecursionError):
        problem = " ".join(problem.split())
        raise PolicyError(f"{where}: {problem} (the text is neither valid YAML nor JSON)") from None


def _index(node: yaml.Node, place: Place, lines: Lines, source: str) -> None:
    """Record the line of every value, refusing duplicate keys and documents too large to check."""
    if len(lines) > MAX_NODES:
        raise PolicyError(f"{source}: more than {MAX_NODES} values (or aliases that expand to them); split it up")
    lines[place] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in keys:
                line = key.start_mark.line + 1
                raise PolicyError(f"{source} line {line}: {_path((*place, name))}: duplicate key")
            keys.add(name)
            _index(value, (*place, name), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*place, i), lines, source)


def _document(value: Any, source: str, lines: Lines | None) -> Policy:
    try:
        return _policy(value, source, lines or {})
    except SpecError as e:
        where = _path(e.place)
        if lines is None:
            raise PolicyError(f"{source}: {where + ': ' if where else ''}{e.message}") from None
        known = next(e.place[:n] for n in range(len(e.place), -1, -1) if e.place[:n] in lines or n == 0)
        line = f" line {lines[known]}" if known in lines else ""
        raise PolicyError(f"{source}{line}: {where + ': ' if where else ''}{e.message}") from None


def _path(place: Place) -> str:
    """`rules[2].args.amount`; odd keys are quoted: `args["a b"]`."""
    parts = (f"[{p}]" if isinstance(p, int) else f".{p}" if p.isidentifier() else f"[{json.dumps(p)}]" for p in place)
    return "".join(parts).lstrip(".")


def _policy(value: Any, source: str, lines: Lines) -> Policy:
    _mapping(value, (), ("default", "rules", "description", "separation_of_duties"), "a policy")
    if "default" not in value:
        raise SpecError((), "default is required: one of allow, ask, deny")
    rules = value.get("rules", [])
    if not isinstance(rules, list):
        raise SpecError(("rules",), "must be a list of rules")
    description = _typed(value, (), "description", str, "a string", None)
    separation = _typed(value, (), "separation_of_duties", bool, "true or false", False)
    compiled = tuple(_rule(raw, i, lines.get(("rules", i))) for i, raw in enumerate(rules))
    default = Decision(choice(value["default"], ("default",), list(Decision)))
    return Policy(default, compiled, description, source, separation_of_duties=bool(separation))


def _mapping(value: Any, place: Place, keys: Sequence[str], what: str) -> None:
    if not isinstance(value, Mapping):
        raise SpecError(place, f"must be a mapping: {what} (got {show(value)})")
    for key in value:
        if key not in keys:
            raise SpecError((*place, str(key)), f"unknown key; the keys of {what} are {', '.join(keys)}")


def _typed(raw: Mapping[str, Any], place: Place, key: str, kind: type, what: str, default: Any) -> Any:
    value = raw.get(key, default)
    if value is not default and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise SpecError((*place, key), f"must be {what} (got {show(value)})")
    return value


def _rule(raw: Any, index: int, line: int | None) -> Rule:
    place: Place = ("rules", index)
    _mapping(raw, place, RULE_KEYS, "a rule")
    if "decision" not in raw:
        raise SpecError(place, "decision is required: one of allow, ask, deny")
    decision = Decision(choice(raw["decision"], (*place, "decision"), list(Decision)))
    checks, words = rule_checks(raw, place)
    summary = f"{decision} {raw.get('tool', '*')}" + (" when " + " and ".join(words) if words else "")
    name = _typed(raw, place, "name", str, "a string", None)
    rule = Rule(index, decision, raw.get("tool", "*"), tuple(checks), _terms(raw, place), summary, name, line)
    for kind in ("match", "not_match"):
        for i, example in enumerate(_typed(raw, place, kind, list, "a list of example actions", [])):
            if rule.catches(_example(example, (*place, kind, i))) != (kind == "match"):
                verb = "does not match" if kind == "match" else "matches"
                raise SpecError(
                    (*place, kind, i),
                    f"{rule.label()} {verb} this example, which it {'must' if kind == 'match' else 'must not'}",
                )
    return rule


def _terms(raw: Mapping[str, Any], place: Place) -> RuleTerms:
    approvers = _typed(raw, place, "approvers", list, "a list of roles or user:NAME", [])
    for i, who in enumerate(approvers):
        if not isinstance(who, str) or not (who in ROLES or (who.startswith("user:") and len(who) > 5)):
            raise SpecError((*place, "approvers", i), f"must be {', '.join(ROLES)} or user:NAME (got {show(who)})")
    quorum, timeout = (
        _typed(raw, place, "quorum", int, "a whole number", 1),
        _typed(raw, place, "timeout_s", int, "a whole number of seconds", None),
    )
    if quorum < 1 or (timeout is not None and timeout <= 0):
        raise SpecError((*place, "quorum" if quorum < 1 else "timeout_s"), "must be at least 1")
    if quorum > MAX_QUORUM:
        raise SpecError((*place, "quorum"), f"must be at most {MAX_QUORUM} (got {quorum})")
    if timeout is not None and timeout > MAX_TIMEOUT_S:
        raise SpecError((*place, "timeout_s"), f"must be at most {MAX_TIMEOUT_S} (30 days; got {timeout})")
    return RuleTerms(
        message=_typed(raw, place, "message", str, "a string", None),
        approvers=tuple(approvers),
        quorum=quorum,
        timeout_s=timeout,
        on_timeout=Decision(choice(raw.get("on_timeout", "deny"), (*place, "on_timeout"), ("deny", "allow"))),
        rememberable=_typed(raw, place, "rememberable", bool, "true or false", True),
        escalate=_typed(raw, place, "escalate", bool, "true or false", False),
    )


def _example(raw: Any, place: Place) -> ActionRequest:
    _mapping(raw, place, ("tool", "args", "risk"), "an example action")
    tool = _typed(raw, place, "tool", str, "a tool name", None)
    if tool is None:
        raise SpecError(place, "an example needs a tool")
    args = _typed(raw, place, "args", dict, "a mapping of arguments", {})
    return ActionRequest(tool, args, Risk(choice(raw.get("risk", "low"), (*place, "risk"), RISK_LEVELS)))
