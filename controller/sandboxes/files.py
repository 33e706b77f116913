"""Reading a sandbox's workspace for the console: list a folder, read a file, as the sandbox's own user.

Both run a tiny stdlib script through `exec` (the flow does), so they see exactly what the agent sees and can read
nothing it cannot. Paths are confined to /workspace after `..` is resolved. Here: the commands and their answers.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from controller.errors import Invalid, NotFound
from controller.models import ExecResult

MAX_READ = 256 * 1024
TIMEOUT_S = 20.0
_LIST = r"""
import json, os, sys
path = sys.argv[1]
if not os.path.isdir(path):
    print(json.dumps({"error": "not a folder" if os.path.exists(path) else "no such path"})); sys.exit(0)
items = []
for e in sorted(os.scandir(path), key=lambda e: (not e.is_dir(follow_symlinks=False), e.name))[:1000]:
    st = e.stat(follow_symlinks=False)
    kind = "dir" if e.is_dir(follow_symlinks=False) else "link" if e.is_symlink() else "file"
    items.append({"name": e.name, "type": kind, "size": st.st_size, "mtime": int(st.st_mtime)})
print(json.dumps({"items": items}))
"""
_READ = r"""
import json, os, sys
path, limit = sys.argv[1], int(sys.argv[2])
if not os.path.isfile(path):
    print(json.dumps({"error": "not a file" if os.path.exists(path) else "no such path"})); sys.exit(0)
with open(path, "rb") as f:
    data = f.read(limit + 1)
try:
    text = data[:limit].decode("utf-8")
    print(json.dumps({"content": text, "truncated": len(data) > limit, "binary": False, "size": os.path.getsize(path)}))
except UnicodeDecodeError:
    print(json.dumps({"content": None, "truncated": False, "binary": True, "size": os.path.getsize(path)}))
"""


def workspace_path(path: str) -> str:
    normal = posixpath.normpath(posixpath.join("/workspace", path))
    if normal != "/workspace" and not normal.startswith("/workspace/"):
        raise Invalid(f"{path!r} is outside the workspace; only /workspace can be browsed")
    return normal


def listing(path: str) -> list[str]:
    """The command that lists a workspace folder (folders first, at most 1,000 entries)."""
    return ["python3", "-c", _LIST, workspace_path(path)]


def reading(path: str) -> list[str]:
    """The command that reads a workspace file as text (up to MAX_READ bytes)."""
    return ["python3", "-c", _READ, workspace_path(path), str(MAX_READ)]


def answer(command: list[str], result: ExecResult) -> dict[str, Any]:
    """The script's answer, with the path it was about; NotFound for a path that is not there."""
    path = command[3]
    try:
        found: dict[str, Any] = json.loads(result.stdout)
    except ValueError as e:
        raise Invalid(f"could not read the workspace: {result.stderr.strip()[:300]}") from e
    if "error" in found:
        raise NotFound(f"{path}: {found['error']}")
    return {"path": path, **found}
