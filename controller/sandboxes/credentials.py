"""Per-sandbox credentials on the host: a folder mounted read-only at /run/fleetgate/sandbox.

The folder and its `sandbox.json` belong to the sandbox's user and nobody else on the host can read them. The
file is replaced atomically, because a pooled sandbox's supervisor waits for it to appear on claim.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

FILE_NAME = "sandbox.json"


class Credentials:
    def __init__(self, root: Path, uid: int) -> None:
        self._root = root
        self._uid = uid

    def folder(self, sandbox_id: str) -> Path:
        return self._root / sandbox_id

    def prepare(self, sandbox_id: str) -> Path:
        """Create the sandbox's empty credentials folder (before its container exists)."""
        folder = self.folder(sandbox_id)
        folder.mkdir(mode=0o500, parents=True, exist_ok=True)
        self._own(folder, 0o500)
        return folder

    def write(self, sandbox_id: str, document: dict[str, Any]) -> None:
        """Atomically (re)place the sandbox's credentials file."""
        folder = self.folder(sandbox_id)
        if not folder.is_dir():
            raise FileNotFoundError(f"credentials folder {folder} is missing")
        tmp = folder / f".{FILE_NAME}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        try:
            os.write(fd, json.dumps(document).encode())
        finally:
            os.close(fd)
        self._own(tmp, 0o400)
        os.replace(tmp, folder / FILE_NAME)

    def remove(self, sandbox_id: str) -> None:
        shutil.rmtree(self.folder(sandbox_id), ignore_errors=True)

    def _own(self, path: Path, mode: int) -> None:
        """Give the path to the sandbox's user; a non-root controller cannot, so it opens reading instead."""
        if os.geteuid() == 0:
            os.chown(path, self._uid, self._uid)
            path.chmod(mode)
        else:
            path.chmod(mode | 0o044 | (0o011 if path.is_dir() else 0))
