"""Shell commands split into the segments a policy judges one by one."""

from __future__ import annotations

import pytest

from controller.oversight.shell import segments


def programs(command: str) -> list[str]:
    return [s.program for s in segments(command)]


def texts(command: str) -> list[str]:
    return [s.text for s in segments(command)]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest -q && git push", ["pytest -q", "git push"]),
        ("ls; rm x", ["ls", "rm x"]),
        ("ls & rm x", ["ls", "rm x"]),
        ("ls || rm x", ["ls", "rm x"]),
        ("ls | wc -l", ["ls", "wc -l"]),
        ("ls |& cat", ["ls", "cat"]),
        ("ls\nrm x", ["ls", "rm x"]),
        ("ls\r\nrm x", ["ls", "rm x"]),
        ("(rm x)", ["rm x"]),
        ("{ rm x; }", ["rm x"]),
        ("(cd /tmp && rm x) | cat", ["cd /tmp", "rm x", "cat"]),
        ("if rm x; then ls; else pwd; fi", ["rm x", "ls", "pwd"]),
        ("while true; do rm x; done", ["true", "rm x"]),
        ("case $x in a) rm x;; esac", ["case $x in a", "rm x"]),
        ("function f { rm x; }", ["function f", "rm x"]),
        ("f() { rm x; }; f", ["f", "rm x", "f"]),
        ("! rm x", ["rm x"]),
    ],
)
def test_lists_and_groups_split_into_segments(command: str, expected: list[str]) -> None:
    assert texts(command) == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ls $(rm x)", ["rm x", "ls $(rm x)"]),
        ("ls `rm x`", ["rm x", "ls `rm x`"]),
        ('echo "$(rm x)"', ["rm x", "echo $(rm x)"]),
        ("echo ${X:-$(rm x)}", ["rm x", "echo ${X:-$(rm x)}"]),
        ("echo $((1 + $(rm x)))", ["rm x", "echo $((1 + $(rm x)))"]),
        ("cat <(rm x)", ["rm x", "cat <(rm x)"]),
        ("X=$(rm x)", ["rm x"]),
        ("echo $(ls $(rm x))", ["rm x", "ls $(rm x)", "echo $(ls $(rm x))"]),
        ("echo x > $(rm x)", ["rm x", "echo x"]),
    ],
)
def test_substitutions_become_segments_and_the_outer_command_keeps_them(command: str, expected: list[str]) -> None:
    assert texts(command) == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("env X=1 rm x", ["env", "rm"]),
        ("env -i -u HOME -- X=1 rm x", ["env", "rm"]),
        ("env -S 'rm -rf /'", ["env", "rm"]),
        ("X=1 Y=2 rm x", ["rm"]),
        ("X=\"a b\" Y='c d' rm x", ["rm"]),
        ('"X=1" rm', ["X=1"]),
        ("coproc rm x", ["coproc", "rm"]),
        ('$"rm" x', ["rm"]),
        ("sudo -u root rm x", ["sudo", "rm"]),
        ("sudo --user=root -E rm x", ["sudo", "rm"]),
        ("sudo --us root rm x", ["sudo", "rm"]),
        ("doas -u root rm x", ["doas", "rm"]),
        ("nice -n 5 rm x", ["nice", "rm"]),
        ("nice -5 rm x", ["nice", "rm"]),
        ("ionice -c 3 rm x", ["ionice", "rm"]),
        ("nohup rm x", ["nohup", "rm"]),
        ("time -p rm x", ["time", "rm"]),
        ("command rm x", ["command", "rm"]),
        ("exec -a name rm x", ["exec", "rm"]),
        ("builtin rm x", ["builtin", "rm"]),
        ("stdbuf -oL rm x", ["stdbuf", "rm"]),
        ("timeout 5 rm x", ["timeout", "rm"]),
        ("timeout -s KILL -k 1 5s rm x", ["timeout", "rm"]),
        ("xargs rm", ["xargs", "rm"]),
        ("xargs -n 1 -P 4 rm", ["xargs", "rm"]),
        ("xargs -I {} -d x rm {}", ["xargs", "rm"]),
        ("xargs -0 -n1 rm", ["xargs", "rm"]),
        ("busybox rm x", ["busybox", "rm"]),
        ("chroot /srv rm x", ["chroot", "rm"]),
        ("flock /tmp/lock rm x", ["flock", "rm"]),
        ("flock /tmp/lock -c 'rm x'", ["flock", "rm"]),
        ("watch -n 1 'rm x'", ["watch", "rm"]),
        ("setsid rm x", ["setsid", "rm"]),
        ("su root -c 'rm x'", ["su", "rm"]),
        ("sh -c 'rm -rf /'", ["sh", "rm"]),
        ('bash -c "ls; rm x"', ["bash", "ls", "rm"]),
        ("bash -ec 'rm x'", ["bash", "rm"]),
        ("bash -o pipefail -c 'rm x'", ["bash", "rm"]),
        ("bash script.sh", ["bash"]),
        ("trap 'rm x' EXIT", ["trap", "rm"]),
        ("find . -name '*.pyc' -exec rm {} \\;", ["find", "rm"]),
        ("find . -execdir rm {} + -ok cat {} ';'", ["find", "rm", "cat"]),
        ("/bin/rm x", ["rm"]),
        ("./rm x", ["rm"]),
        ("\\rm x", ["rm"]),
        ("r''m x", ["rm"]),
        ("$'\\x72m' x", ["rm"]),
        ("sudo env X=1 nice -n 5 sh -c 'xargs rm'", ["sudo", "env", "nice", "sh", "xargs", "rm"]),
        ("command -v rm", ["command"]),
    ],
)
def test_wrappers_are_unwrapped_so_the_program_they_run_is_its_own_segment(command: str, expected: list[str]) -> None:
    assert programs(command) == expected


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("$(echo rm) x", "expansion"),
        ("$X x", "expansion"),
        ("${X} x", "expansion"),
        ("r[m] x", "pattern"),
        ("/bin/r? x", "pattern"),
        ("{rm,x} y", "pattern"),
        ('eval "rm x"', "eval"),
        ("source ./script.sh", "source"),
        (". ./script.sh", "."),
        ("cat <<EOF\nhello\nEOF", "here-document"),
        ("echo 'rm x' | sh", "standard input"),
        ("bash -s", "standard input"),
        ("env -Z rm x", "guess"),
        ("echo 'unbalanced", "does not parse"),
        ('echo "unbalanced', "does not parse"),
        ("echo $(unbalanced", "does not parse"),
        ("echo `unbalanced", "does not parse"),
    ],
)
def test_segments_whose_program_cannot_be_known_are_opaque(command: str, why: str) -> None:
    found = [s for s in segments(command) if s.opaque]
    assert found, segments(command)
    assert why in (found[0].reason or "")


def test_long_options_not_known_to_take_a_value_are_flags() -> None:
    assert [(s.program, s.opaque) for s in segments("sudo --preserve-env rm x")] == [("sudo", False), ("rm", False)]


@pytest.mark.parametrize(
    "command",
    ["echo 'a && rm x'", 'echo "a; rm x"', "echo a\\;\\ rm\\ x", "echo '$(rm x)'", "echo a#b", "echo '|' rm"],
)
def test_quoted_operators_stay_inside_one_harmless_segment(command: str) -> None:
    assert programs(command) == ["echo"]


def test_quotes_are_removed_the_way_the_shell_does() -> None:
    (segment,) = segments("""echo 'a  b' "c \\"d\\" $HOME" e\\ f""")
    assert segment.argv == ["echo", "a  b", 'c "d" $HOME', "e f"]
    assert segment.text == 'echo a  b c "d" $HOME e f'


def test_redirections_are_not_arguments_and_do_not_split() -> None:
    (segment,) = segments("cat a > out.txt 2>&1 < in.txt >> log &> all")
    assert segment.argv == ["cat", "a"]
    assert segment.redirects == ["out.txt", "1", "in.txt", "log", "all"]


def test_a_comment_hides_only_the_rest_of_its_line() -> None:
    assert texts("ls # rm x\nrm y") == ["ls", "rm y"]


def test_a_here_document_body_is_data_not_commands() -> None:
    found = segments("cat <<'EOF' > notes.txt\nrm -rf /\nEOF\nls")
    assert [s.text for s in found] == ["cat", "ls"]
    assert found[0].opaque


@pytest.mark.parametrize("command", ["", "   ", "\n\n", ";", "# only a comment", "X=1"])
def test_empty_commands_give_no_segments(command: str) -> None:
    assert segments(command) == []


def test_an_unparseable_command_is_one_opaque_segment_split_on_spaces() -> None:
    (segment,) = segments("rm -rf / 'oops")
    assert (segment.program, segment.opaque) == ("rm", True)


def test_nesting_is_bounded() -> None:
    command = "rm x"
    for _ in range(40):
        command = f"echo $({command})"
    found = segments(command)
    assert any(s.opaque and "nested" in (s.reason or "") for s in found)
