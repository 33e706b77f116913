"""What some programs do with their arguments, so that a rule about a program holds however it is called.

Two questions, asked of every simple command the shell module finds:

- Which other names does this command go by? `/usr/bin/git -C repo --no-pager push` is `git push` to a deny or
  ask rule (`Reading.forms`): the program by its base name, git without its global options, a git alias that
  the same command line defines (`git -c alias.x=push x`) expanded. Allow rules only ever match the command as
  written, because the global options can change what the subcommand does (`git -c core.pager=...`).
- Can what it runs be seen at all? Code handed to an interpreter (`python3 -c`, `perl -e`, `node -e`), a script
  file (`python3 build.py`, `sh deploy.sh`, `./tool`: the agent may have written it), a git subcommand that is
  not one of git's own (an alias from a config file), a git option that runs programs or one we do not know:
  these are opaque (`Reading.doubt` says why), so no allow rule or default lets them through unseen.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# Where a program found by its path is one the system installed, not one the agent wrote.
SYSTEM_DIRS = frozenset({"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"})


@dataclass
class Reading:
    """Other names the command goes by (for deny and ask rules), why it cannot be seen into, and shell code it
    hands on to run (`git -c alias.x='!cmd' x`), which is judged as segments of its own."""

    forms: list[str] = field(default_factory=list)
    doubt: str | None = None
    scripts: list[str] = field(default_factory=list)


def read(argv: Sequence[str]) -> Reading:
    """What the shell module needs to know about one simple command beyond its words."""
    program = posixpath.basename(argv[0].rstrip("/")) or argv[0]
    reading = Reading()
    if "/" in argv[0]:
        reading.forms.append(" ".join([program, *argv[1:]]))
        if posixpath.dirname(posixpath.normpath(argv[0])) not in SYSTEM_DIRS:
            reading.doubt = f"it runs {argv[0]}, a file the agent may have written"
    if program == "git":
        _git(list(argv[1:]), reading)
    elif _interpreter(program) is not None:
        reading.doubt = reading.doubt or _interpreted(program, list(argv[1:]))
    elif program in ("awk", "gawk", "mawk", "nawk") and len(argv) > 1 and _AWK_RUNS.search(" ".join(argv[1:])):
        reading.doubt = f"its {program} program runs commands (system, or a pipe)"
    return reading


# --- git ------------------------------------------------------------------------------------------------

# git's own commands (porcelain and the plumbing agents use); another word is an alias or an external git-*.
_GIT_COMMANDS_NAMES = (
    "add am annotate apply archive bisect blame branch bundle cat-file check-attr check-ignore checkout "
    "checkout-index cherry cherry-pick clean clone commit commit-tree config count-objects describe diff "
    "diff-files diff-index diff-tree difftool fetch for-each-ref format-patch fsck gc grep hash-object help init "
    "log ls-files ls-remote ls-tree maintenance merge merge-base mergetool mktag mktree mv name-rev notes pull "
    "push range-diff read-tree rebase reflog remote repack replace reset restore rev-list rev-parse revert rm "
    "shortlog show show-branch show-ref sparse-checkout stash status submodule switch symbolic-ref tag "
    "update-index update-ref var verify-commit verify-tag version whatchanged worktree write-tree"
)
GIT_COMMANDS = frozenset(_GIT_COMMANDS_NAMES.split())
_GIT_FLAGS_NAMES = (
    "-p --paginate -P --no-pager --no-replace-objects --bare --literal-pathspecs --glob-pathspecs "
    "--noglob-pathspecs --icase-pathspecs --no-optional-locks -v --version -h --help"
)
GIT_FLAGS = frozenset(_GIT_FLAGS_NAMES.split())
_GIT_VALUED = frozenset({"--git-dir", "--work-tree", "--namespace", "--super-prefix", "--attr-source"})
# Configuration that makes git run a program of the agent's choosing.
_GIT_RUNS = re.compile(
    r"^(alias\.|core\.(pager|sshcommand|editor|hookspath|fsmonitor|askpass|gitproxy)|credential\.|"
    r"diff\.|filter\.|gpg\.|pager\.|sequence\.editor|merge\.|uploadpack\.|receivepack\.|protocol\.|"
    r"remote\..*\.(receivepack|uploadpack|proxy)|include\.|includeif\.)",
    re.IGNORECASE,
)


def _git(args: list[str], reading: Reading) -> None:
    """git without its global options, aliases of `-c` expanded; opaque for options that run programs."""
    aliases: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg in GIT_FLAGS:
            i += 1
            continue
        option, eq, attached = arg.partition("=")
        if option in _GIT_VALUED and option.startswith("--"):
            value, i = (attached, i + 1) if eq else (args[i + 1] if i + 1 < len(args) else "", i + 2)
        elif arg in ("-C", "-c"):
            value, i = (args[i + 1] if i + 1 < len(args) else ""), i + 2
        else:
            reading.doubt = reading.doubt or f"git option {arg} is one we do not know or that runs programs"
            return
        if option == "-c":
            name, _, setting = value.partition("=")
            if name.lower().startswith("alias."):
                aliases[name[len("alias.") :]] = setting
            elif _GIT_RUNS.match(name):
                reading.doubt = reading.doubt or f"git -c {name} makes git run a program"
    rest = args[i:]
    if not rest:
        return
    if rest[0] in aliases:
        expansion = aliases[rest[0]]
        if expansion.startswith("!"):
            reading.scripts.append(" ".join([expansion[1:], *rest[1:]]))
            reading.doubt = reading.doubt or f"git alias {rest[0]} runs a shell command"
            return
        rest = [*expansion.split(), *rest[1:]]
    elif rest[0] not in GIT_COMMANDS:
        reading.doubt = reading.doubt or f"`git {rest[0]}` is not one of git's commands (an alias, or a git-* file)"
    reading.forms.append(" ".join(["git", *rest]))


# --- interpreters ---------------------------------------------------------------------------------------

_INTERPRETERS = {
    "python": ("-c", "-m"),
    "perl": ("-e -E", ""),
    "ruby": ("-e", ""),
    "node": ("-e -p --eval --print", ""),
    "php": ("-r", ""),
    "lua": ("-e", ""),
    "tclsh": ("", ""),
    "Rscript": ("-e", ""),
}
_VERSIONED = re.compile(r"^(python|pypy|lua|ruby|perl|php)[0-9.]*$")
_AWK_RUNS = re.compile(r"system\s*\(|\|\s*getline|print[^;}]*\|\s*\"|\|&")


def _interpreter(program: str) -> str | None:
    if program in _INTERPRETERS or program == "nodejs":
        return "node" if program == "nodejs" else program
    found = _VERSIONED.match(program)
    return ("python" if found.group(1) == "pypy" else found.group(1)) if found else None


def _interpreted(program: str, args: list[str]) -> str | None:
    """Why an interpreter's command cannot be seen into: code on its command line, a script file, or stdin."""
    kind = _interpreter(program) or program
    code_flags, module_flags = (part.split() for part in _INTERPRETERS.get(kind, ("", "")))
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in code_flags or any(arg.startswith(f) and len(f) == 2 and len(arg) > 2 for f in code_flags):
            return f"{program} runs code given on its command line ({flag})"
        if flag in module_flags:
            return None  # a named module or a subcommand (python3 -m pytest): what runs is known by its name
        if not arg.startswith("-"):
            return f"{program} runs a script file ({arg}) the agent may have written"
    return f"{program} reads the code it runs from standard input"


def shell_script(program: str, path: str) -> str:
    """Why `sh FILE` is opaque."""
    return f"{program} runs a script file ({path}) the agent may have written"
