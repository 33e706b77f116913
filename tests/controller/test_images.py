"""Reading this machine's apt sources for debootstrap (unit tests on file trees made here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.images import ImageBuildFailed, host_apt_source, inputs_digest


def machine(tmp_path: Path, os_release: str, files: dict[str, str]) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text(os_release)
    for name, text in files.items():
        (tmp_path / "etc/apt" / name).write_text(text)
    return tmp_path


def test_deb822_sources_give_the_main_mirror_not_security(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        "VERSION_CODENAME=bookworm\n",
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n"
            )
        },
    )
    assert host_apt_source(root) == ("http://mirror.example/debian", "bookworm")


def test_one_line_sources_with_options(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        'VERSION_CODENAME="jammy"\n',
        {"sources.list": "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://archive.example/ubuntu jammy main\n"},
    )
    assert host_apt_source(root) == ("http://archive.example/ubuntu", "jammy")


def test_no_usable_source_says_what_to_do(tmp_path: Path) -> None:
    root = machine(tmp_path, "VERSION_CODENAME=bookworm\n", {"sources.list": "deb-src http://x/debian bookworm main\n"})
    with pytest.raises(ImageBuildFailed, match="--base IMAGE"):
        host_apt_source(root)


def test_digest_changes_with_any_input() -> None:
    assert inputs_digest("bookworm", "python3") == inputs_digest("bookworm", "python3")
    assert inputs_digest("bookworm", "python3") != inputs_digest("bookworm", "python3", "git")
    assert inputs_digest("ab", "c") != inputs_digest("a", "bc")
