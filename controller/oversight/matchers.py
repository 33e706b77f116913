"""Value matchers of policy rules: globs, comparisons, paths, regexes, alternatives, HTTP requests.

Each compiles once, at load time, to a `Matcher` (a predicate and the words that describe it); a bad one raises
`SpecError` with its place inside the rule, so the loader can name its line. Choices beyond the spec:

- Comparisons (`>100`, `<= 5`, ...) take numbers and numeric strings (Python's `float()` syntax after trimming
  spaces, so "150", " 1e3 ", "1_000" and "inf" are numbers). Bools, NaN, other strings, lists and null are not
  numbers and never satisfy any comparison, `!=` included. A plain number in a rule (`amount: 100`) means `==100`.
  So a policy that must fail closed on odd values allows `amount: "<=100"` and lets its default catch the rest.
- True/false in a rule match only bools (1 is not true); `in` compares the same way, and deeply.
- Paths: relative values are joined to /workspace, `.` and `..` resolved lexically (symlinks cannot be seen
  here), and a leading `//` is folded to `/`; patterns are normalised the same way. `*` and `?` stay within one
  directory, `/**/` spans any number of them (none included), a trailing `/**` also matches the directory itself,
  and any other `**` matches across directories. `~` is not expanded: it is a name like any other.
- HTTP: the method is compared upper-cased and the host lower-cased without a trailing dot; the path is
  percent-decoded once and its dot segments resolved before matching, and its globs are fnmatch-style (`*` spans
  `/`). A request without a usable `url` (or `method`, when the rule names one) does not match.
- A YAML null, a list or an unknown mapping form is not a matcher: it is a load error saying what to write.
"""

from __future__ import annotations

import fnmatch
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from controller.oversight.shell import Segment

WORKSPACE = "/workspace"
Place = tuple[str | int, ...]
_OPERATOR = re.compile(r"\s*(>=|<=|==|!=|>|<)")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
FORMS = ("path", "regex", "glob", "any", "in")
RISK_LEVELS = ("low", "medium", "high", "critical")


class SpecError(Exception):
    """A rule part that is not valid, with where it is (relative to the rule)."""

    def __init__(self, place: Place, message: str) -> None:
        super().__init__(message)
        self.place, self.message = place, message


@dataclass(frozen=True)
class Matcher:
    """A compiled predicate on one value, and how to say it to a person."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)


class Subject(Protocol):
    """What rules look at: an action (policy.ActionRequest), or one shell segment's view of it."""

    @property
    def tool(self) -> str: ...
    @property
    def args(self) -> dict[str, Any]: ...
    @property
    def risk(self) -> str: ...


Check = Callable[[Subject, Segment | None], bool]


def rule_checks(raw: Mapping[str, Any], place: Place) -> tuple[list[Check], list[str]]:
    """The checks of a rule's matchers (all must pass), and a few words describing each."""
    tool = glob(raw.get("tool", "*"), (*place, "tool"))
    checks: list[Check] = [lambda a, s: tool(a.tool)]
    words: list[str] = []
    if "risk" in raw:
        levels = raw["risk"] if isinstance(raw["risk"], list) and raw["risk"] else [raw["risk"]]
        wanted = {choice(v, (*place, "risk"), RISK_LEVELS) for v in levels}
        checks.append(lambda a, s: str(a.risk) in wanted)
        words.append("risk is " + " or ".join(v for v in RISK_LEVELS if v in wanted))
    if "risk_at_least" in raw:
        floor = RISK_LEVELS.index(choice(raw["risk_at_least"], (*place, "risk_at_least"), RISK_LEVELS))
        checks.append(lambda a, s: RISK_LEVELS.index(str(a.risk)) >= floor)
        words.append(f"risk is {RISK_LEVELS[floor]} or above")
    for name, matcher in _args(raw.get("args", {}), (*place, "args")):
        checks.append(_arg_check(name, matcher))
        words.append(f"{name} {matcher.text}")
    if "command" in raw:
        command = globs(raw["command"], (*place, "command"))
        if raw.get("decision") == "allow":  # as written: options before a subcommand can change what it does
            checks.append(lambda a, s: s is not None and command(s.text))
        else:  # by any name it goes by: /usr/bin/git -C . push is a git push
            checks.append(lambda a, s: s is not None and (command(s.text) or any(command(f) for f in s.forms)))
        words.append(f"the command {command.text}")
    if "program" in raw:
        program = globs(raw["program"], (*place, "program"))
        checks.append(lambda a, s: s is not None and program(s.program))
        words.append(f"the program {program.text}")
    if "http" in raw:
        http = http_matcher(raw["http"], (*place, "http"))
        checks.append(lambda a, s: http(a.args))
        words.append(http.text)
    return checks, words


def _arg_check(name: str, matcher: Matcher) -> Check:
    return lambda a, s: name in a.args and matcher(a.args[name])


def _args(raw: Any, place: Place) -> list[tuple[str, Matcher]]:
    if not isinstance(raw, Mapping):
        raise SpecError(place, f"must be a mapping of argument names to matchers (got {show(raw)})")
    for name in raw:
        if not isinstance(name, str):
            raise SpecError(place, f"argument names must be strings (got {show(name)})")
    return [(name, value_matcher(m, (*place, name))) for name, m in raw.items()]


def choice(raw: Any, place: Place, options: Sequence[str]) -> str:
    """`raw` if it is one of `options`, else a SpecError listing them."""
    if not isinstance(raw, str) or raw not in options:
        raise SpecError(place, f"must be one of {', '.join(options)} (got {show(raw)})")
    return raw


def number(value: Any) -> float | None:
    """The value as a number, or None when it is not one (bools and NaN are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        result = float(value.strip()) if isinstance(value, str) else float(value)
    except (ValueError, OverflowError):
        return None
    return None if math.isnan(result) else result


def same(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers, also inside lists and mappings."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def glob(pattern: Any, place: Place = (), *, fold: Callable[[str], str] = str) -> Matcher:
    """An fnmatch-style glob on strings (non-strings never match)."""
    if not isinstance(pattern, str) or not pattern:
        raise SpecError(place, f"must be a non-empty glob string (got {show(pattern)})")
    try:
        regex = re.compile(fnmatch.translate(fold(pattern)), re.S)
    except re.error as e:
        raise SpecError(place, f"bad glob {pattern!r}: {e}") from e
    return Matcher(lambda v: isinstance(v, str) and regex.match(fold(v)) is not None, _glob_text(pattern))


def globs(raw: Any, place: Place) -> Matcher:
    """One glob or a list of them (any may match)."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise SpecError(place, "must be a glob or a non-empty list of globs")
    each = [glob(p, (*place, i) if isinstance(raw, list) else place) for i, p in enumerate(items)]
    shown = ", ".join(repr(p) for p in items[:3]) + (f" or {len(items) - 3} more" if len(items) > 3 else "")
    text = each[0].text if len(each) == 1 else f"matches one of {shown}"
    return Matcher(lambda v: any(m(v) for m in each), text)


def value_matcher(raw: Any, place: Place) -> Matcher:
    """The matcher an `args` entry describes."""
    if len(place) > 32:
        raise SpecError(place, "matchers nest too deeply")
    if isinstance(raw, bool):
        return Matcher(lambda v: isinstance(v, bool) and v == raw, f"is {show(raw)}")
    if isinstance(raw, int | float):
        return comparison("==", float(raw), place)
    if isinstance(raw, str):
        op = _OPERATOR.match(raw)
        return glob(raw, place) if op is None else comparison(op.group(1), raw[op.end() :], place)
    if isinstance(raw, Mapping) and len(raw) == 1 and next(iter(raw)) in FORMS:
        form, body = next(iter(raw.items()))
        return _FORM[form](body, (*place, form))
    forms = ", ".join(f"{{{f}: ...}}" for f in FORMS)
    raise SpecError(place, f'must be a glob, a comparison like ">100", a number, true/false or one of {forms} '
                           f"(got {show(raw)})")  # fmt: skip


def comparison(op: str, operand: Any, place: Place) -> Matcher:
    """A numeric comparison: values that are not numbers never match."""
    bound = number(operand)
    if bound is None or math.isinf(bound):
        raise SpecError(place, f"{op} must be followed by a number (got {show(operand)})")
    compare = _COMPARE[op]

    def test(value: Any) -> bool:
        n = number(value)
        return n is not None and compare(n, bound)

    return Matcher(test, f"{op} {bound:g}")


def normalise_path(value: str) -> str:
    """An absolute, lexically resolved path: relative ones are taken from /workspace."""
    path = posixpath.normpath(posixpath.join(WORKSPACE, value))
    return "/" + path.lstrip("/")


def path_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a path glob: `*` within a directory, `**` across them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and pattern[i + 3 : i + 4] in ("", "/"):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] in "*?":
            out.append("[^/]*" if pattern[i] == "*" else "[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.S)


def _path(raw: Any, place: Place) -> Matcher:
    if not isinstance(raw, str) or not raw:
        raise SpecError(place, f"must be a non-empty path glob (got {show(raw)})")
    try:
        regex = path_regex(normalise_path(raw))
    except re.error as e:
        raise SpecError(place, f"bad path glob {raw!r}: {e}") from e
    text = f"is a path matching {normalise_path(raw)!r}"
    return Matcher(lambda v: isinstance(v, str) and regex.fullmatch(normalise_path(v)) is not None, text)


def _regex(raw: Any, place: Place) -> Matcher:
    if not isinstance(raw, str):
        raise SpecError(place, f"must be a regular expression string (got {show(raw)})")
    try:
        regex = re.compile(raw)
    except re.error as e:
        raise SpecError(place, f"bad regular expression {raw!r}: {e}") from e
    return Matcher(lambda v: isinstance(v, str) and regex.fullmatch(v) is not None, f"matches /{raw}/")


def _any(raw: Any, place: Place) -> Matcher:
    if not isinstance(raw, list) or not raw:
        raise SpecError(place, "must be a non-empty list of matchers")
    each = [value_matcher(item, (*place, i)) for i, item in enumerate(raw)]
    return Matcher(lambda v: any(m(v) for m in each), "(" + " or ".join(m.text for m in each) + ")")


def _in(raw: Any, place: Place) -> Matcher:
    if not isinstance(raw, list) or not raw:
        raise SpecError(place, "must be a non-empty list of values")
    return Matcher(lambda v: any(same(v, item) for item in raw), f"in {show(raw)}")


_FORM: dict[str, Callable[[Any, Place], Matcher]] = {
    "path": _path,
    "regex": _regex,
    "glob": glob,
    "any": _any,
    "in": _in,
}


def http_matcher(raw: Any, place: Place) -> Matcher:
    """Matches an action's `method` and `url` arguments by method, host and path globs."""
    if not isinstance(raw, Mapping) or not raw or set(raw) - {"method", "host", "path"}:
        raise SpecError(place, f"must be a mapping of method, host and/or path globs (got {show(raw)})")
    method = glob(raw["method"], (*place, "method"), fold=str.upper) if "method" in raw else None
    host = glob(raw["host"], (*place, "host"), fold=str.lower) if "host" in raw else None
    path = glob(raw["path"], (*place, "path")) if "path" in raw else None

    def test(args: Any) -> bool:
        request = _request(args)
        if request is None:
            return False
        verb, hostname, route = request
        if method is not None and (verb is None or not method(verb)):
            return False
        return (host is None or host(hostname)) and (path is None or path(route))

    parts = [f"{k} {raw[k]}" for k in ("method", "host", "path") if k in raw]
    return Matcher(test, "HTTP " + ", ".join(parts))


def _request(args: Any) -> tuple[str | None, str, str] | None:
    url, method = args.get("url"), args.get("method")
    if not isinstance(url, str) or (method is not None and not isinstance(method, str)):
        return None
    try:
        parts = urlsplit(url.strip())
        hostname = (parts.hostname or "").rstrip(".")
    except ValueError:
        return None
    path = unquote(parts.path) or "/"
    resolved = "/" + posixpath.normpath(path).lstrip("/")
    if path.endswith("/") and resolved != "/":
        resolved += "/"
    return method, hostname, resolved


def _glob_text(pattern: str) -> str:
    return f"matches {pattern!r}" if any(c in pattern for c in "*?[") else f"is {pattern!r}"


def show(value: Any) -> str:
    """A value as JSON for an error message, cut short when long."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
