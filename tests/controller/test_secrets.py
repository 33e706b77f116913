"""The secret box: what it seals only its key file opens, and the key file is made once, private, whoever races."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from controller.secrets import SecretBox, SecretKeyChanged

PLAINTEXT = "sk-ant-api03-very-secret-value"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sealed_secrets_open_again_and_do_not_carry_the_plaintext(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "keys" / "secrets.key")
    sealed = box.seal(PLAINTEXT)
    assert PLAINTEXT.encode() not in sealed
    assert box.seal(PLAINTEXT) != sealed  # a fresh IV each time: equal secrets do not look equal at rest
    assert box.open(sealed) == PLAINTEXT
    assert box.open(box.seal("ünïcødé ✓")) == "ünïcødé ✓"


def test_a_second_box_on_the_same_key_file_opens_what_the_first_sealed(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    sealed = SecretBox(path).seal(PLAINTEXT)
    assert SecretBox(path).open(sealed) == PLAINTEXT


def test_the_key_is_made_on_first_use_private_in_a_private_folder(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    box = SecretBox(path)
    assert not path.parent.exists()  # making a box touches nothing
    box.seal("x")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["secrets.key"]  # no temporary file left behind


def test_processes_racing_to_make_the_key_end_up_with_one(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    start = threading.Barrier(16)
    sealed: list[bytes] = []

    def seal() -> None:
        box = SecretBox(path)  # a box each, as each process has its own
        start.wait()
        sealed.append(box.seal(PLAINTEXT))

    threads = [threading.Thread(target=seal) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sealed) == 16
    assert all(SecretBox(path).open(s) == PLAINTEXT for s in sealed)
    assert [p.name for p in path.parent.iterdir()] == ["secrets.key"]


def test_a_replaced_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    sealed = SecretBox(path).seal(PLAINTEXT)
    path.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretKeyChanged, match="key file changed") as raised:
        SecretBox(path).open(sealed)
    assert raised.value.status_code == 409
    assert str(path) in raised.value.message
    assert PLAINTEXT not in raised.value.message


def test_a_missing_key_file_is_a_clear_error_and_no_new_key_is_made(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    sealed = SecretBox(path).seal(PLAINTEXT)
    path.unlink()
    with pytest.raises(SecretKeyChanged, match="is missing: the key file changed"):
        SecretBox(path).open(sealed)
    assert not path.exists()


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    path.write_text("not a key\n")
    with pytest.raises(SecretKeyChanged, match="not a Fernet key"):
        SecretBox(path).seal(PLAINTEXT)
