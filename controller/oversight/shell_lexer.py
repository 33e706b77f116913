"""The shell lexer behind `shell.segments`: words, operators and command substitutions, quoted as bash does."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 12
MAX_LENGTH = 100_000  # longer text is not analysed (a denial of service on the gate): it is one opaque segment
_CONTROL = (";;&", ";;", ";&", "&&", "||", "|&", ";", "|", "&", "(", ")", "\n")
REDIRECT = ("<<<", "<<-", "&>>", "<<", "&>", ">>", ">&", "<&", ">|", "<>", ">", "<")
_OPERATORS = sorted(_CONTROL + REDIRECT, key=len, reverse=True)
KEYWORDS = frozenset({"{", "}", "!", "if", "then", "elif", "else", "fi", "do", "done", "while", "until", "esac"})
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_PLAIN = re.compile(r"[^\s'\"\\`$<>;&|()]+")
_PLAIN_QUOTED = re.compile(r'[^"\\`$]+')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]")
_ANSI = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S)
_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ANSI_BODY = re.compile(r"(?:[^'\\]|\\.)*'", re.S)
_BACKTICK_BODY = re.compile(r"(?:[^`\\]|\\.)*`", re.S)
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "rbash", "fish"})


class ShellSyntaxError(ValueError):
    """The text is not a command a shell would accept (unbalanced quotes or parentheses, ...)."""


@dataclass
class Word:
    start: int
    text: str = ""
    raw: str = ""
    bare: str = ""  # the characters outside quotes, where globs and braces expand
    dynamic: bool = False  # holds a parameter expansion or a substitution
    quoted: bool = False
    subs: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    bare_parts: list[str] = field(default_factory=list)

    def add(self, text: str, *, bare: bool = False) -> None:
        self.parts.append(text)
        if bare:
            self.bare_parts.append(text)

    def close(self, raw: str) -> None:
        self.text, self.bare, self.raw = "".join(self.parts), "".join(self.bare_parts), raw

    @property
    def pattern(self) -> bool:
        braces = "{" in self.bare and "}" in self.bare and ("," in self.bare or ".." in self.bare)
        return braces or any(c in self.bare for c in "*?[")


Token = Word | str


def _ansi_c(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xuU" and len(e) > 1:
            code = int(e[1:], 16)
            return chr(code) if code <= 0x10FFFF else "\ufffd"
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xFF)
        if e[0] == "c" and len(e) == 2:
            return chr(ord(e[1]) & 0x1F)
        return _ANSI_SIMPLE.get(e, e)

    return _ANSI.sub(one, body)


class Lexer:
    """Splits shell text into words and operators, unquoting words and collecting their substitutions."""

    def __init__(self, text: str, depth: int = 0) -> None:
        self.s, self.i, self.depth = text, 0, depth
        self.tokens: list[Token] = []
        self.heredocs: list[tuple[str, bool]] = []
        self.want_delimiter: bool | None = None  # after << (False) or <<- (True)

    def run(self) -> list[Token]:
        word: Word | None = None
        while self.i < len(self.s):
            c, op = self.s[self.i], self._operator()
            if c in " \t\r" or op is not None:
                self._finish(word, op)
                word, self.i = None, self.i + (len(op) if op else 1)
                if op is not None:
                    self._emit_operator(op)
            elif self.s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#" and word is None:
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                word = word or Word(self.i)
                self._part(word)
        self._finish(word, None)
        return self.tokens

    def _operator(self) -> str | None:
        if self.s.startswith(("<(", ">("), self.i):
            return None
        return next((op for op in _OPERATORS if self.s.startswith(op, self.i)), None)

    def _finish(self, word: Word | None, op: str | None) -> None:
        if word is None:
            return
        word.close(self.s[word.start : self.i])
        if op in REDIRECT and re.fullmatch(r"[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\}", word.raw):
            return  # a file descriptor of the redirection, not an argument
        self.tokens.append(word)
        if self.want_delimiter is not None:
            self.heredocs.append((word.text, self.want_delimiter))
            self.want_delimiter = None

    def _emit_operator(self, op: str) -> None:
        self.tokens.append(op)
        if op in ("<<", "<<-"):
            self.want_delimiter = op == "<<-"
        elif op == "\n":
            self._skip_heredoc_bodies()

    def _skip_heredoc_bodies(self) -> None:
        for delimiter, strip_tabs in self.heredocs:
            while self.i < len(self.s):
                end = self.s.find("\n", self.i)
                end = len(self.s) if end < 0 else end
                line, self.i = self.s[self.i : end], end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
        self.heredocs = []

    def _part(self, w: Word) -> None:
        s, i = self.s, self.i
        c = s[i]
        if c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unbalanced single quote")
            w.add(s[i + 1 : end])
            w.quoted, self.i = True, end + 1
        elif c == '"':
            self._double(w)
        elif c == "\\":
            w.add(s[i + 1 : i + 2] or "\\")
            w.quoted, self.i = True, i + 2
        elif c in "`$<>":
            self._expansion(w, quoted=False)
        else:
            run = _PLAIN.match(s, i)
            end = run.end() if run else i + 1
            w.add(s[i:end], bare=True)
            self.i = end

    def _double(self, w: Word) -> None:
        w.quoted, self.i = True, self.i + 1
        while self.i < len(self.s) and self.s[self.i] != '"':
            c, nxt = self.s[self.i], self.s[self.i + 1 : self.i + 2]
            if c == "\\" and nxt and nxt in '$`"\\\n':
                w.add(nxt if nxt != "\n" else "")
                self.i += 2
            elif c in "`$":
                self._expansion(w, quoted=True)
            else:
                run = _PLAIN_QUOTED.match(self.s, self.i)
                end = run.end() if run else self.i + 1
                w.add(self.s[self.i : end])
                self.i = end
        if self.i >= len(self.s):
            raise ShellSyntaxError("unbalanced double quote")
        self.i += 1

    def _expansion(self, w: Word, *, quoted: bool) -> None:
        s, i = self.s, self.i
        if s.startswith("$((", i):
            end = self._matching(i + 1)
            self._dynamic(w, end, _substitutions(s[i + 3 : end - 2], self.depth + 1))
        elif s.startswith(("$(", "<(", ">("), i):
            end = self._matching(i + 1)
            self._dynamic(w, end, [s[i + 2 : end - 1]])
        elif s[i] == "`":
            end = self._backtick_end(i)
            self._dynamic(w, end, [re.sub(r"\\([`$\\])", r"\1", s[i + 1 : end - 1])])
        elif s.startswith("${", i):
            end = self._matching(i + 1, "{", "}")
            self._dynamic(w, end, _substitutions(s[i + 2 : end - 1], self.depth + 1))
        elif s.startswith("$'", i) and not quoted:
            self._ansi_quote(w)
        elif s.startswith('$"', i) and not quoted:
            self.i += 1  # a locale-translated string: the shell runs it as the plain "..." text
            self._double(w)
        elif s[i] == "$" and (name := _NAME.match(s, i + 1)):
            self._dynamic(w, name.end(), [])
        else:
            w.add(s[i], bare=not quoted)
            self.i = i + 1

    def _ansi_quote(self, w: Word) -> None:
        match = _ANSI_BODY.match(self.s, self.i + 2)
        if match is None:
            raise ShellSyntaxError("unbalanced $'...' quote")
        w.add(_ansi_c(match.group()[:-1]))
        w.quoted, self.i = True, match.end()

    def _dynamic(self, w: Word, end: int, subs: list[str]) -> None:
        w.subs.extend(subs)
        w.add(self.s[self.i : end])
        w.dynamic, self.i = True, end

    def _matching(self, start: int, opening: str = "(", closing: str = ")", depth: int = 0) -> int:
        """The index just past the bracket that closes the one at `start`, skipping quotes and nesting."""
        if depth > 64:
            raise ShellSyntaxError("nested too deeply")
        s, j, level = self.s, start, 0
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'":
                j = s.find("'", j + 1)
                if j < 0:
                    break
            elif c == '"':
                j = self._double_end(j, depth + 1) - 1
            elif c == "`":
                j = self._backtick_end(j) - 1
            elif c == opening:
                level += 1
            elif c == closing:
                level -= 1
                if level == 0:
                    return j + 1
            j += 1
        raise ShellSyntaxError(f"unbalanced {opening}")

    def _double_end(self, start: int, depth: int) -> int:
        s, j = self.s, start + 1
        while j < len(s) and s[j] != '"':
            if s[j] == "\\":
                j += 2
            elif s.startswith("$(", j):
                j = self._matching(j + 1, depth=depth)
            elif s[j] == "`":
                j = self._backtick_end(j)
            else:
                j += 1
        if j >= len(s):
            raise ShellSyntaxError("unbalanced double quote")
        return j + 1

    def _backtick_end(self, start: int) -> int:
        match = _BACKTICK_BODY.match(self.s, start + 1)
        if match is None:
            raise ShellSyntaxError("unbalanced backtick")
        return match.end()


def _substitutions(text: str, depth: int) -> list[str]:
    """The command substitutions inside a parameter expansion or arithmetic."""
    if "$(" not in text and "`" not in text and "<(" not in text:
        return []
    if depth > 64:
        raise ShellSyntaxError("nested too deeply")
    return [sub for token in Lexer(text, depth).run() if isinstance(token, Word) for sub in token.subs]
