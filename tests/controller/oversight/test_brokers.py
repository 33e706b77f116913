"""The brokers on their own: a fake context, a real HTTP server on loopback, real git on real repositories."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.config import Settings
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.models import ServiceKind
from controller.oversight.brokers import BrokerContext, broker_for
from controller.oversight.brokers.git_push import _credentials, _ssh_command
from controller.oversight.brokers.http_request import MAX_RESPONSE_BYTES, redact_bytes
from controller.oversight.services import ServiceTarget

SECRET = "tok-7f3a9c-SECRET"


def make_context(
    tmp_path: Path,
    *,
    secrets: dict[str, str] | None = None,
    services: tuple[ServiceTarget, ...] = (),
    workspace: Path | None = None,
    allow: str = "",
) -> BrokerContext:
    known, registered = secrets or {}, {s.name: s for s in services}

    def secret(name: str) -> str:
        if name not in known:
            raise NotFound(f"no secret {name!r}")
        return known[name]

    def service(name: str) -> ServiceTarget:
        if name not in registered:
            raise NotFound(f"no service {name!r}")
        return registered[name]

    settings = Settings(home=tmp_path / "home", egress_allow=allow)
    return BrokerContext(settings=settings, sandbox_id="sb_test", secret=secret, service=service, workspace=workspace)


# --- http.request -----------------------------------------------------------------------------------------


class Echo(ThreadingHTTPServer):
    seen: list[dict[str, str]]


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with the request's headers, in the body and in a header: a server that hands a secret back."""

    server: Echo

    def do_GET(self) -> None:
        headers = dict(self.headers.items())
        self.server.seen.append(headers)
        if self.path == "/big":
            auth = headers.get("Authorization", "")
            body = b"x" * (MAX_RESPONSE_BYTES - 6) + auth.encode() + b"y" * MAX_RESPONSE_BYTES
        elif self.path == "/binary":
            body = bytes(range(256)) + headers.get("Authorization", "").encode()
        else:
            body = json.dumps({"headers": headers, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("X-Echo", headers.get("Authorization", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append({**dict(self.headers.items()), "body": body.decode()})
        self.send_response(201)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo(("127.0.0.1", 0), EchoHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def port_of(server: Echo) -> int:
    return int(server.server_address[1])


def test_a_secret_goes_out_in_the_header_and_never_comes_back(tmp_path: Path, echo: Echo) -> None:
    ctx = make_context(tmp_path, secrets={"api-token": SECRET}, allow=f"127.0.0.1:{port_of(echo)}")
    args = {
        "method": "get",
        "url": f"http://127.0.0.1:{port_of(echo)}/v1/items?q=1",
        "headers": {"Authorization": "Bearer {{secret:api-token}}", "Accept": "application/json"},
    }
    result = broker_for("http.request")(ctx, args)
    assert echo.seen[0]["Authorization"] == f"Bearer {SECRET}"  # the server got the secret
    assert result["status"] == 200
    assert SECRET not in json.dumps(result)  # ... and the agent never sees it
    assert result["headers"]["x-echo"] == "Bearer {{secret:api-token}}"
    assert json.loads(result["body"])["headers"]["Authorization"] == "Bearer {{secret:api-token}}"
    assert json.loads(result["body"])["path"] == "/v1/items?q=1"
    assert args["headers"]["Authorization"] == "Bearer {{secret:api-token}}"  # the action's args keep it


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(tmp_path: Path, echo: Echo) -> None:
    port = port_of(echo)
    ctx = make_context(tmp_path, allow=f"127.0.0.1:{port},[::1]:{port}")
    result = broker_for("http.request")(ctx, {"method": "GET", "url": f"http://localhost:{port}/"})
    assert result["status"] == 200
    assert echo.seen[0]["Host"] == f"localhost:{port}"


def test_a_loopback_url_is_refused_without_an_allow_entry(tmp_path: Path, echo: Echo) -> None:
    ctx = make_context(tmp_path, secrets={"api-token": SECRET})
    args = {"method": "GET", "url": f"http://127.0.0.1:{port_of(echo)}/", "headers": {"X": "{{secret:api-token}}"}}
    with pytest.raises(Forbidden, match="loopback"):
        broker_for("http.request")(ctx, args)
    other_port = make_context(tmp_path, allow=f"127.0.0.1:{port_of(echo) + 1}")
    with pytest.raises(Forbidden):
        broker_for("http.request")(other_port, {"method": "GET", "url": f"http://localhost:{port_of(echo)}/"})
    assert echo.seen == []


def test_a_body_is_sent_and_a_redirect_is_returned_not_followed(tmp_path: Path, echo: Echo) -> None:
    ctx = make_context(tmp_path, allow=f"127.0.0.1:{port_of(echo)}")
    url = f"http://127.0.0.1:{port_of(echo)}/items"
    result = broker_for("http.request")(ctx, {"method": "POST", "url": url, "body": '{"a": 1}', "timeout_s": 5})
    assert (result["status"], result["headers"]["location"], result["body"]) == (201, "/elsewhere", "")
    assert echo.seen[0]["body"] == '{"a": 1}'
    assert len(echo.seen) == 1


def test_a_large_body_is_capped_and_a_secret_cut_at_the_cap_is_not_half_shown(tmp_path: Path, echo: Echo) -> None:
    ctx = make_context(tmp_path, secrets={"api-token": SECRET}, allow=f"127.0.0.1:{port_of(echo)}")
    url = f"http://127.0.0.1:{port_of(echo)}/big"
    args = {"method": "GET", "url": url, "headers": {"Authorization": "{{secret:api-token}}"}}
    result = broker_for("http.request")(ctx, args)
    assert result["truncated"] is True
    assert len(result["body"]) <= MAX_RESPONSE_BYTES
    assert result["body"].endswith("x")  # "tok-7f" would have been the first six characters of the secret
    assert SECRET[:6] not in result["body"]


def test_a_binary_body_comes_back_as_base64_redacted(tmp_path: Path, echo: Echo) -> None:
    import base64

    ctx = make_context(tmp_path, secrets={"api-token": SECRET}, allow=f"127.0.0.1:{port_of(echo)}")
    url = f"http://127.0.0.1:{port_of(echo)}/binary"
    args = {"method": "GET", "url": url, "headers": {"Authorization": "{{secret:api-token}}"}}
    result = broker_for("http.request")(ctx, args)
    assert base64.b64decode(result["body_base64"]).endswith(b"{{secret:api-token}}")


def test_redaction_covers_the_common_encodings_of_a_secret() -> None:
    import base64
    from urllib.parse import quote

    secret = 'a/b+"c d'
    for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1], base64.b64encode(secret.encode()).decode()):
        assert redact_bytes(f"<{form}>".encode(), {"k": secret}) == b"<{{secret:k}}>", form


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "https://example.com/"}, "needs 'method'"),
        ({"method": "BREW", "url": "https://example.com/"}, "needs 'method'"),
        ({"method": "GET"}, "needs 'url'"),
        ({"method": "GET", "url": "ftp://example.com/"}, "http:// or https://"),
        ({"method": "GET", "url": "/relative"}, "http:// or https://"),
        ({"method": "GET", "url": "https://user:pw@example.com/"}, "user or password"),
        ({"method": "GET", "url": "https://example.com/a b"}, "spaces"),
        ({"method": "GET", "url": "https://example.com/{{secret:x}}"}, "header values only"),
        ({"method": "GET", "url": "https://example.com/", "headers": {"Bad Name": "x"}}, "not a valid HTTP header"),
        ({"method": "GET", "url": "https://example.com/", "headers": {"X": "a\r\nInjected: 1"}}, "line breaks"),
        ({"method": "GET", "url": "https://example.com/", "headers": {"Host": "internal"}}, "controller sets it"),
        ({"method": "GET", "url": "https://example.com/", "headers": {"X": "{{secret:../etc}}"}}, "does not name"),
        ({"method": "GET", "url": "https://example.com/", "headers": ["X: y"]}, "must be an object"),
        ({"method": "GET", "url": "https://example.com/", "body": {"a": 1}}, "'body' must be a string"),
        ({"method": "GET", "url": "https://example.com/", "timeout_s": 0}, "'timeout_s'"),
        ({"method": "GET", "url": "https://example.com/", "verify": False}, "does not take 'verify'"),
    ],
)
def test_bad_http_arguments_say_what_is_wrong(tmp_path: Path, args: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace("/", "/")):
        broker_for("http.request")(make_context(tmp_path), args)


def test_an_unknown_secret_is_named(tmp_path: Path, echo: Echo) -> None:
    ctx = make_context(tmp_path, allow=f"127.0.0.1:{port_of(echo)}")
    args = {"method": "GET", "url": f"http://127.0.0.1:{port_of(echo)}/", "headers": {"X": "{{secret:nope}}"}}
    with pytest.raises(NotFound, match="nope"):
        broker_for("http.request")(ctx, args)
    assert echo.seen == []


# --- git.push ---------------------------------------------------------------------------------------------

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "agent",
           "GIT_AUTHOR_EMAIL": "agent@example.com", "GIT_COMMITTER_NAME": "agent",
           "GIT_COMMITTER_EMAIL": "agent@example.com"}  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"write {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with a repository on branch main, one commit in it."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    commit(folder, "calc.py", "def add(a, b):\n    return a + b\n")
    return folder


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    return bare


def git_service(name: str, upstream: str, secret: str | None = None, header: str | None = None) -> ServiceTarget:
    return ServiceTarget(name=name, kind=ServiceKind.git, upstream=upstream, header=header, secret=secret)


def pusher(tmp_path: Path, workspace: Path | None, origin: Path, **extra: Any) -> Callable[..., dict[str, Any]]:
    ctx = make_context(tmp_path, services=(git_service("origin", f"file://{origin}"),), workspace=workspace, **extra)
    return lambda **args: broker_for("git.push")(ctx, {"remote": "origin", "branch": "main", **args})


def test_a_branch_is_pushed_to_a_bare_repository(tmp_path: Path, workspace: Path, origin: Path) -> None:
    head = git(workspace, "rev-parse", "HEAD")
    assert pusher(tmp_path, workspace, origin)() == {
        "pushed": True,
        "remote": "origin",
        "branch": "main",
        "commit": head,
    }
    assert git(origin, "rev-parse", "refs/heads/main") == head
    assert git(origin, "log", "--format=%s", "main") == "write calc.py"


def test_the_workspace_repositorys_config_and_hooks_never_run(tmp_path: Path, workspace: Path, origin: Path) -> None:
    marker = tmp_path / "ran"
    touch = f"touch {marker}"
    hooks = workspace / "evil-hooks"
    hooks.mkdir()
    for hook in ("pre-push", "reference-transaction", "post-checkout", "pre-commit", "post-update", "fsmonitor"):
        (hooks / hook).write_text(f"#!/bin/sh\n{touch}\n")
        (hooks / hook).chmod(0o755)
        (workspace / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\n{touch}\n")
        (workspace / ".git" / "hooks" / hook).chmod(0o755)
    for key, value in {
        "core.fsmonitor": f"{hooks}/fsmonitor",
        "core.hooksPath": str(hooks),
        "core.sshCommand": touch,
        "core.pager": touch,
        "credential.helper": f"!{touch}",
        "uploadpack.packObjectsHook": touch,
        "remote.origin.receivepack": touch,
        "protocol.allow": "always",
        "include.path": str(tmp_path / "included"),
    }.items():
        git(workspace, "config", key, value)
    (tmp_path / "included").write_text(f"[core]\n\tsshCommand = {touch}\n")
    result = pusher(tmp_path, workspace, origin)()
    assert result["pushed"] is True
    assert not marker.exists()
    assert git(origin, "rev-parse", "refs/heads/main") == result["commit"]


def test_links_and_alternates_out_of_the_workspace_are_not_followed(tmp_path: Path, origin: Path) -> None:
    """A repository elsewhere on the controller's machine, which the agent points at three ways."""
    private = tmp_path / "private"
    private.mkdir()
    git(private, "init", "-q", "-b", "main")
    secret_commit = commit(private, "key.txt", "the controller's own secret\n")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    commit(workspace, "a.txt", "a\n")
    # 1. alternates: the private repository's objects as if they were the workspace's own
    (workspace / ".git" / "objects" / "info" / "alternates").write_text(f"{private / '.git' / 'objects'}\n")
    (workspace / ".git" / "refs" / "heads" / "stolen").write_text(secret_commit + "\n")
    with pytest.raises(Invalid, match="does not hold"):
        pusher(tmp_path, workspace, origin)(branch="stolen")
    # 2. a ref that is a link to the private repository's branch
    (workspace / ".git" / "refs" / "heads" / "linked").symlink_to(private / ".git" / "refs" / "heads" / "main")
    with pytest.raises(NotFound, match="no branch 'linked'"):
        pusher(tmp_path, workspace, origin)(branch="linked")
    # 3. a .git that is a link to the private repository
    linked = tmp_path / "linked-workspace"
    linked.mkdir()
    (linked / ".git").symlink_to(private / ".git")
    with pytest.raises(Invalid, match="symbolic link"):
        pusher(tmp_path, linked, origin)()
    assert (
        subprocess.run(["git", "--git-dir", str(origin), "cat-file", "-e", secret_commit], check=False).returncode != 0
    )


def test_a_packed_repository_with_its_caches_pushes(tmp_path: Path, workspace: Path, origin: Path) -> None:
    """Commit graphs, bitmaps and reverse indexes are left behind (git does without them); packs are copied."""
    commit(workspace, "b.txt", "b\n")
    git(workspace, "-c", "repack.writeBitmaps=true", "-c", "pack.writeReverseIndex=true", "gc", "-q")
    git(workspace, "commit-graph", "write", "--reachable")
    assert list((workspace / ".git" / "objects" / "pack").glob("*.bitmap"))
    result = pusher(tmp_path, workspace, origin)()
    assert git(origin, "rev-list", "--count", "main") == "2"
    assert result["commit"] == git(workspace, "rev-parse", "HEAD")


def test_a_fifo_in_the_repository_does_not_hang_the_push(tmp_path: Path, workspace: Path, origin: Path) -> None:
    os.mkfifo(workspace / ".git" / "refs" / "heads" / "pipe")
    assert pusher(tmp_path, workspace, origin)()["pushed"] is True


def test_a_missing_branch_says_which_there_are(tmp_path: Path, workspace: Path, origin: Path) -> None:
    with pytest.raises(NotFound, match=r"no branch 'release' \(branches: main\)"):
        pusher(tmp_path, workspace, origin)(branch="release")


def test_a_rejected_push_says_why_and_force_overrides(tmp_path: Path, workspace: Path, origin: Path) -> None:
    pusher(tmp_path, workspace, origin)()
    git(workspace, "commit", "-q", "--amend", "-m", "rewritten")
    with pytest.raises(Conflict, match=r"refused the push of 'main'.*merge them first, or push with force"):
        pusher(tmp_path, workspace, origin)()
    assert pusher(tmp_path, workspace, origin)(force=True)["commit"] == git(origin, "rev-parse", "main")


def test_a_push_from_a_subfolder_repository(tmp_path: Path, origin: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "project").mkdir(parents=True)
    git(workspace / "project", "init", "-q", "-b", "main")
    head = commit(workspace / "project", "a.txt", "a\n")
    assert pusher(tmp_path, workspace, origin)(path="project")["commit"] == head
    with pytest.raises(Invalid, match="no git repository"):
        pusher(tmp_path, workspace, origin)(path=".")
    with pytest.raises(Invalid, match="inside the workspace"):
        pusher(tmp_path, workspace, origin)(path="../..")


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"branch": "-delete"}, Invalid, "needs 'branch'"),
        ({"branch": "a..b"}, Invalid, "needs 'branch'"),
        ({"branch": "x@{1}"}, Invalid, "needs 'branch'"),
        ({"remote": ""}, Invalid, "needs 'remote'"),
        ({"remote": "nowhere"}, NotFound, "no service 'nowhere'"),
        ({"force": "yes"}, Invalid, "'force' must be true or false"),
        ({"url": "file:///tmp/x"}, Invalid, "does not take 'url'"),
    ],
)
def test_bad_push_arguments_say_what_is_wrong(
    tmp_path: Path, workspace: Path, origin: Path, args: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("{", r"\{")):
        pusher(tmp_path, workspace, origin)(**args)


def test_a_push_needs_a_git_service_and_a_workspace_here(tmp_path: Path, workspace: Path, origin: Path) -> None:
    api = ServiceTarget(name="api", kind=ServiceKind.http, upstream="https://api.example.com", header=None, secret=None)
    ctx = make_context(tmp_path, services=(api,), workspace=workspace)
    with pytest.raises(Invalid, match="not a git remote"):
        broker_for("git.push")(ctx, {"remote": "api", "branch": "main"})
    with pytest.raises(Conflict, match="not on the controller's machine"):
        pusher(tmp_path, None, origin)()


def test_an_ssh_key_is_a_private_file_and_the_host_key_is_pinned(tmp_path: Path) -> None:
    target = git_service("forge", "ssh://git@forge.example.com/team/app.git", secret="-----BEGIN KEY-----\nabc")
    folder = tmp_path / "scratch"
    folder.mkdir()
    command = _ssh_command(make_context(tmp_path), target, folder)
    assert stat.S_IMODE((folder / "key").stat().st_mode) == 0o600
    assert (folder / "key").read_text().endswith("abc\n")
    for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=accept-new", "-F /dev/null"):
        assert option in command
    assert f"UserKnownHostsFile={tmp_path / 'home' / 'ssh' / 'known_hosts'}" in command
    (folder / "key").unlink()
    pinned = make_context(tmp_path, secrets={"forge.known_hosts": "forge.example.com ssh-ed25519 AAAA"})
    command = _ssh_command(pinned, target, folder)
    assert "StrictHostKeyChecking=yes" in command
    assert (folder / "known_hosts").read_text() == "forge.example.com ssh-ed25519 AAAA\n"


def test_an_https_token_travels_in_gits_environment_not_its_command_line(tmp_path: Path) -> None:
    target = git_service("forge", "https://forge.example.com/app.git", secret="t0ken", header="Authorization")
    env: dict[str, str] = {}
    hidden = _credentials(make_context(tmp_path), target, "https", tmp_path, env)
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("http.extraHeader", "Authorization: Bearer t0ken")
    assert "Bearer t0ken" in hidden
