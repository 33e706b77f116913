"""Secrets at rest: sealed with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) under one key file.

The key is made on first use, mode 0600 in a 0700 folder. It is written to a temporary file and linked into
place, so two processes that start at once end up with one key: the second link fails and that process reads the
winner's. Losing or replacing the key file makes every sealed secret unreadable; the error says so.
"""

from __future__ import annotations

import os
import secrets as stdlib_secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from controller.errors import Conflict


class SecretKeyChanged(Conflict):
    """A sealed secret that the key file cannot open: the key was replaced, lost or damaged."""


class SecretBox:
    """Seals and opens strings with the key at `path` (read, or made, on first use; never at construction)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fernet: Fernet | None = None

    def seal(self, plaintext: str) -> bytes:
        """The plaintext encrypted and authenticated; safe to store."""
        return self._key(create=True).encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str:
        """The plaintext of something `seal` made with this key file; SecretKeyChanged otherwise."""
        try:
            return self._key(create=False).decrypt(bytes(sealed)).decode()
        except InvalidToken as e:
            raise SecretKeyChanged(self._changed("does not open a secret sealed before")) from e

    def _key(self, *, create: bool) -> Fernet:
        if self._fernet is None:
            try:
                key = self.path.read_bytes().strip()
            except FileNotFoundError:
                if not create:
                    raise SecretKeyChanged(self._changed("is missing")) from None
                key = self._make_key()
            try:
                self._fernet = Fernet(key)
            except ValueError as e:
                raise SecretKeyChanged(self._changed("is not a Fernet key (damaged?)")) from e
        return self._fernet

    def _make_key(self) -> bytes:
        """Write a new key, unless another process got there first; either way, the key now in place."""
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        key = Fernet.generate_key()
        temp = folder / f".{self.path.name}.{os.getpid()}.{stdlib_secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key + b"\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temp, self.path)  # fails if the file exists: the first process to link wins
            except FileExistsError:
                return self.path.read_bytes().strip()
        finally:
            temp.unlink(missing_ok=True)
        return key

    def _changed(self, what: str) -> str:
        return (
            f"the secrets key file {self.path} {what}: the key file changed since these secrets were sealed. "
            f"Put the original key file back, or set every secret and service secret again "
            f"(`fleetgate secret set`, `fleetgate service rm` and `add`)"
        )
