"""Reading a sandbox's workspace for the console: list a folder, read a file, as the sandbox's own user.

Both run a tiny stdlib script through `exec`, so they see exactly what the agent sees and can read nothing it
cannot. Paths are confined to /workspace after `..` is resolved.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from sqlmodel import Session

from controller.errors import Invalid, NotFound
from controller.models import ExecRequest
from controller.sandboxes.service import SandboxService

MAX_READ = 256 * 1024
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


def _run(service: SandboxService, session: Session, sandbox_id: str, script: str, *args: str) -> dict[str, Any]:
    result = service.exec(
        session=session,
        sandbox_id=sandbox_id,
        request=ExecRequest(command=["python3", "-c", script, *args], timeout_s=20),
    )
    try:
        answer: dict[str, Any] = json.loads(result.stdout)
    except ValueError as e:
        raise Invalid(f"could not read the workspace: {result.stderr.strip()[:300]}") from e
    if "error" in answer:
        raise NotFound(f"{args[0]}: {answer['error']}")
    return answer


def list_folder(service: SandboxService, session: Session, sandbox_id: str, path: str) -> dict[str, Any]:
    where = workspace_path(path)
    return {"path": where, **_run(service, session, sandbox_id, _LIST, where)}


def read_file(service: SandboxService, session: Session, sandbox_id: str, path: str) -> dict[str, Any]:
    where = workspace_path(path)
    return {"path": where, **_run(service, session, sandbox_id, _READ, where, str(MAX_READ))}
