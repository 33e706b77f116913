"""Shell commands as the policy sees them: every simple command that could run, as its own segment.

`segments("pytest -q && git push")` gives two segments, so a policy can allow the first and deny the second.
Choices made here, all to keep a denied program from slipping past:

- The lexer is our own, quote-aware one rather than `shlex`: shlex forgets whether a token was quoted (so `\\;`
  and `;` look alike), treats `#` inside a word as a comment (`ls a#b; rm x` would hide `rm x`), and does not
  see `$(...)` inside double quotes. Words are unquoted the way bash does it, `$'...'` escapes and `$"..."`
  included, so `$'\\x72m'` is `rm`.
- Lists (`;` `&&` `||` `|` `|&` `&` newline), subshells, groups and the keywords of `if`/`while`/`case` split
  segments. Each command substitution (`$(...)`, backticks, `<(...)`, also inside `"..."`, `${...}` and
  `$((...))`) is decomposed too, and the outer command keeps the substitution's text as its argument.
- A wrapper (`sudo`, `env`, `nice`, `timeout`, `xargs`, `sh -c`, `find -exec`, `trap`, `watch` ... see
  _WRAPPERS and _unwrap) is kept as a segment of its own *and* the command it runs becomes another, so a policy
  can deny `sudo` itself while an allow rule for a wrapper can never let what it wraps through. A wrapper's long
  options are flags unless known to take a value (getopt abbreviations included). Leading `NAME=value`
  assignments are dropped (they run nothing themselves).
- A segment is opaque when what it runs cannot be known statically: the program is an expansion or a glob,
  `eval`, `source`, a here-document, a shell reading commands from its standard input, a wrapper option we do not
  know (so where its command starts is a guess), nesting deeper than MAX_DEPTH, or text that does not parse or
  is longer than MAX_LENGTH (then the whole text is one opaque segment whose words are split on whitespace).
- Arguments that `xargs` and `find -exec` add at run time are unknown; deny rules on the program still apply.
- Here-document bodies are skipped (they are data); the command that reads one is opaque.
- What some programs do with their arguments is `programs.py`'s: the other names a command goes by (`/usr/bin/git
  -C x push` is `git push` to a deny rule), and interpreters given code, script files and git aliases (opaque).
- An alias the command line defines (`alias p='git push'; p`, also on a later line) is expanded where it is used,
  and its value is judged as a command of its own too (it may be used where no parser here follows).
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field

from controller.oversight import programs
from controller.oversight.shell_lexer import (
    ASSIGNMENT,
    KEYWORDS,
    MAX_DEPTH,
    MAX_LENGTH,
    REDIRECT,
    SHELLS,
    Lexer,
    ShellSyntaxError,
    Token,
    Word,
)

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Segment", "ShellSyntaxError", "segments"]
RESERVED = KEYWORDS | {"case", "for", "select", "function", "in", "time", "coproc", "[[", "]]"}


@dataclass
class Segment:
    """One simple command: what runs (`argv`, `program`) and whether that can be known statically."""

    argv: list[str]
    text: str
    program: str
    opaque: bool = False
    reason: str | None = None
    redirects: list[str] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)  # other texts it goes by, for deny and ask rules (programs.py)


def segments(command: str) -> list[Segment]:
    """Every simple command in `command` (inner substitutions first), for the policy to judge one by one."""
    if len(command) > MAX_LENGTH:
        return [_opaque(command, f"it is longer than {MAX_LENGTH} characters, too long to analyse")]
    found = _decompose(command, 0)
    defined = _aliases(found)
    values = [seg for value in defined.values() for seg in _decompose(value, 1)]
    return _with_aliases(found, defined, 0) + values


def _aliases(found: list[Segment]) -> dict[str, str]:
    """`alias NAME=VALUE` definitions anywhere in the command line, wherever they stand. An alias named after a
    reserved word (`do`, `if`) makes its definition opaque: bash expands it in places no parser here follows."""
    defined: dict[str, str] = {}
    for seg in found:
        if seg.program == "alias":
            for arg in seg.argv[1:]:
                name, eq, value = arg.partition("=")
                if eq and name and not name.startswith("-"):
                    defined[name] = value
                    if name in RESERVED and not seg.opaque:
                        seg.opaque, seg.reason = True, f"it defines an alias named after the reserved word {name!r}"
    return defined


def _with_aliases(found: list[Segment], defined: dict[str, str], depth: int) -> list[Segment]:
    """Each use of an alias the same command line defines is followed by what it expands to (a shell that
    expands aliases runs that, whether it is defined on the same line, a later line, or a function's line)."""
    if not defined:
        return found
    expanded: list[Segment] = []
    for seg in found:
        expanded.append(seg)
        if seg.argv and seg.argv[0] in defined and seg.program != "alias":
            if depth >= MAX_DEPTH:
                expanded.append(_opaque(seg.text, f"aliases nested more than {MAX_DEPTH} levels deep"))
                continue
            text = " ".join([defined[seg.argv[0]], *map(shlex.quote, seg.argv[1:])])
            inner = _decompose(text, depth + 1)
            rest = {name: value for name, value in defined.items() if name != seg.argv[0]}
            expanded.extend(_with_aliases(inner, rest, depth + 1))
    return expanded


def _decompose(command: str, depth: int) -> list[Segment]:
    if depth > MAX_DEPTH:
        return [_opaque(command, f"nested more than {MAX_DEPTH} levels deep")]
    try:
        tokens = Lexer(command).run()
        return [seg for words, targets, heredoc in _commands(tokens) for seg in _build(words, targets, heredoc, depth)]
    except ShellSyntaxError as e:
        return [_opaque(command, f"does not parse as a shell command ({e})")]


def _opaque(command: str, reason: str) -> Segment:
    argv = command.split()
    while argv and ASSIGNMENT.match(argv[0]):
        argv = argv[1:]
    program = posixpath.basename(argv[0]) if argv else ""
    return Segment(argv, " ".join(argv), program, opaque=True, reason=reason)


def _commands(tokens: list[Token]) -> list[tuple[list[Word], list[Word], bool]]:
    """Group tokens into simple commands: their words, their redirection targets, whether one is a here-doc."""
    found: list[tuple[list[Word], list[Word], bool]] = []
    words: list[Word] = []
    targets: list[Word] = []
    heredoc, i = False, 0
    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, Word):
            if words or token.quoted or token.text not in KEYWORDS:
                words.append(token)
            if len(words) == 2 and words[0].text == "function":
                found.append((words, targets, heredoc))
                words, targets, heredoc = [], [], False
        elif token in REDIRECT:
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            if not isinstance(target, Word):
                raise ShellSyntaxError(f"{token} has no target")
            targets.append(target)
            heredoc, i = heredoc or token in ("<<", "<<-"), i + 1
        else:
            found.append((words, targets, heredoc))
            words, targets, heredoc = [], [], False
        i += 1
    found.append((words, targets, heredoc))
    return [c for c in found if c[0] or c[1]]


def _build(words: list[Word], targets: list[Word], heredoc: bool, depth: int) -> list[Segment]:
    inner = [seg for w in words + targets for sub in w.subs for seg in _decompose(sub, depth + 1)]
    why = "it reads a here-document" if heredoc else None
    return inner + _command(words, [t.text for t in targets], why, depth)


def _command(words: list[Word], redirects: list[str], why: str | None, depth: int) -> list[Segment]:
    """The segment of one simple command, followed by those of whatever it wraps."""
    while words and ASSIGNMENT.match(words[0].raw):
        words = words[1:]
    if not words:
        return []
    argv = [w.text for w in words]
    program = posixpath.basename(argv[0].rstrip("/")) or argv[0]
    if words[0].dynamic:
        why = f"the program comes from an expansion ({words[0].raw})"
    elif words[0].pattern:
        why = f"the program name is a pattern the shell expands ({words[0].raw})"
    wrapped, outer_why = ([], None) if why and words[0].dynamic else _unwrap(program, words)
    reading = programs.read(argv)
    segment = Segment(argv, " ".join(argv), program, False, why or outer_why or reading.doubt, redirects)
    segment.opaque, segment.forms = segment.reason is not None, reading.forms
    handed_on = [seg for script in reading.scripts for seg in _decompose(script, depth + 1)]
    return [segment] + [seg for item in wrapped for seg in item.segments(depth + 1)] + handed_on


@dataclass
class _Inner:
    """What a wrapper runs: words of a command, or shell text; `doubt` says why its start is a guess."""

    words: list[Word] | None = None
    script: str | None = None
    doubt: str | None = None

    def segments(self, depth: int) -> list[Segment]:
        if self.script is not None:
            return _decompose(self.script, depth)
        if depth > MAX_DEPTH:
            return [_opaque(" ".join(w.text for w in self.words or []), f"nested more than {MAX_DEPTH} levels deep")]
        return _command(self.words or [], [], self.doubt, depth)


@dataclass(frozen=True)
class _Opts:
    """How a wrapper's options are spelled, so we know where the command it runs begins."""

    flags: str = ""  # short options without a value
    valued: str = ""  # short options taking a value, attached or as the next word
    attached: str = ""  # short options whose optional value can only be attached (xargs -i[R])
    long_valued: str = ""  # long options (without --) taking a value; other long options are flags
    operands: int = 0  # words between the options and the command: timeout DURATION, chroot DIR
    assignments: bool = False  # NAME=value words before the command (env, sudo)


_WRAPPERS = {
    "sudo": _Opts("ABbEeHiKklnPSsVv", "CDghpRrTtUu", "", "user group close-from chdir host prompt role type "
                  "command-timeout other-user chroot", assignments=True),
    "doas": _Opts("Lns", "Cu"),
    "env": _Opts("0iv", "uCSP", "", "unset chdir split-string", assignments=True),
    "nice": _Opts("0123456789", "n", "", "adjustment"),
    "ionice": _Opts("t", "cnpPu", "", "class classdata pid pgid uid"),
    "nohup": _Opts(),
    "time": _Opts("apqvV", "fo", "", "format output"),
    "command": _Opts("pvV"),
    "exec": _Opts("cl", "a"),
    "builtin": _Opts(),
    "stdbuf": _Opts("", "ioe", "", "input output error"),
    "timeout": _Opts("v", "ks", "", "kill-after signal", operands=1),
    "xargs": _Opts("0oprtx", "adEILnPs", "eil", "arg-file delimiter max-args max-procs max-chars process-slot-var"),
    "busybox": _Opts(),
    "chroot": _Opts("", "", "", "userspec groups", operands=1),
    "flock": _Opts("sxenuoFv", "wEc", "", "wait timeout conflict-exit-code command", operands=1),
    "watch": _Opts("bcdeEgtxprw", "nq", "", "interval equexit"),
    "setsid": _Opts("cfw"),
    "coproc": _Opts(),
    "su": _Opts("flmpP", "cgGsw", "", "command group supp-group shell whitelist-environment", operands=1),
}  # fmt: skip


def _options(words: list[Word], opts: _Opts) -> tuple[int, dict[str, str], str | None]:
    """Where the wrapped command starts, the options seen (name -> value), and the first unknown option."""
    seen: dict[str, str] = {}
    unknown: str | None = None
    i = 1
    while i < len(words):
        w = words[i].text
        if w == "--":
            i += 1
            break
        if w.startswith("--"):
            name, eq, value = w[2:].partition("=")
            if not eq and name and any(o.startswith(name) for o in opts.long_valued.split()):
                value, i = (words[i + 1].text if i + 1 < len(words) else ""), i + 1  # getopt takes abbreviations
            seen[f"--{name}"] = value
        elif len(w) > 1 and w[0] == "-":
            for j, c in enumerate(w[1:], 2):
                if c in opts.valued or c in opts.attached:
                    value = w[j:]
                    if not value and c in opts.valued:
                        value, i = (words[i + 1].text if i + 1 < len(words) else ""), i + 1
                    seen[f"-{c}"] = value
                    break
                unknown = unknown if c in opts.flags else unknown or w
                seen[f"-{c}"] = ""
        elif w != "-" and not (opts.assignments and ASSIGNMENT.match(w)):
            break
        i += 1
    return i + opts.operands, seen, unknown


def _unwrap(program: str, words: list[Word]) -> tuple[list[_Inner], str | None]:
    """What `program` runs in turn (if it is a wrapper), and why the outer segment is opaque (if it is)."""
    args = [w.text for w in words[1:]]
    if program in SHELLS:
        return _shell(words)
    if program == "eval":
        return [_Inner(script=" ".join(args))], "eval runs its arguments as shell code"
    if program in ("source", "."):
        return [], f"`{program}` runs commands from a file"
    if program == "find":
        return _find(words), None
    if program == "trap":
        args = args[1:] if args[:1] == ["--"] else args
        return ([_Inner(script=args[0])] if len(args) > 1 and not args[0].startswith("-") else []), None
    opts = _WRAPPERS.get(program)
    return ([], None) if opts is None else _wrapped(program, words, opts)


def _wrapped(program: str, words: list[Word], opts: _Opts) -> tuple[list[_Inner], str | None]:
    i, seen, unknown = _options(words, opts)
    doubt = f"`{program}` has an option we do not know ({unknown}), so where its command starts is a guess"
    rest, script = words[i:], seen.get("-c", seen.get("--command"))
    if program in ("flock", "su") and rest and rest[0].text in ("-c", "--command"):
        rest, script = [], " ".join(w.text for w in rest[1:2])
    if program in ("flock", "su") and script is not None:
        return [_Inner(script=script)], None
    if program == "su":
        return [], "su without -c starts a shell that reads commands from standard input"
    if program == "command" and ("-v" in seen or "-V" in seen):
        return [], None
    if program == "watch" and "-x" not in seen and "--exec" not in seen:
        return ([_Inner(script=" ".join(w.text for w in rest))] if rest else []), None
    split = seen.get("-S", seen.get("--split-string"))
    if program == "env" and split is not None:
        try:
            rest = [Word(0, text=t, raw=t, bare=t) for t in shlex.split(split)] + rest
        except ValueError:
            return [], f"env -S {split!r} does not parse"
    return ([_Inner(words=rest, doubt=doubt if unknown else None)] if rest else []), None


def _shell(words: list[Word]) -> tuple[list[_Inner], str | None]:
    """`sh -c TEXT` runs TEXT; `sh FILE` runs a file (kept as it is); a bare `sh` reads commands from stdin."""
    command, stdin, i = False, False, 1
    while i < len(words):
        w = words[i].text
        if w == "--":
            i += 1
            break
        if w in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 1
        elif not (len(w) > 1 and w[0] in "-+"):
            break
        command |= w[0] == "-" and not w.startswith("--") and "c" in w
        stdin |= w[0] == "-" and not w.startswith("--") and "s" in w
        i += 1
    if command:
        return ([_Inner(script=words[i].text)] if i < len(words) else []), None
    if i >= len(words) or stdin:
        return [], "the shell reads its commands from standard input"
    return [], programs.shell_script(words[0].text, words[i].text)


def _find(words: list[Word]) -> list[_Inner]:
    """The commands of `find ... -exec CMD ... ;` (also -execdir, -ok, -okdir; `{} +` ends one too)."""
    found, i = [], 1
    while i < len(words):
        if words[i].text in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(words) and not (words[j].text == ";" or (words[j].text == "+" and words[j - 1].text == "{}")):
                j += 1
            if j > i + 1:
                found.append(_Inner(words=words[i + 1 : j]))
            i = j
        i += 1
    return found
