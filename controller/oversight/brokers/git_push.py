"""`git.push` {remote, branch, force?, path?}: push a branch of the agent's workspace repository to a remote an
admin registered (a service of kind `git`), with the controller's credentials.

The agent's repository is never run by git: its objects and refs are copied into a controller-made bare
repository first (`quarantine.py`), and git pushes from that copy with no system or global config, no hooks, no
credential helpers, an empty HOME and only the remote's own protocol allowed. The service's secret is
- for ssh:// remotes, a private key: written to a 0600 file in a private temporary folder for the push and deleted
  after. The host key is checked against the secret `<remote>.known_hosts` when an admin stored one
  (StrictHostKeyChecking=yes); without it the first key seen is accepted and pinned in `<home>/ssh/known_hosts`
  (accept-new), so a later change of key refuses the push;
- for http(s):// remotes, the value of the service's header (Authorization by default, "Bearer <secret>" for a
  bare token), sent as `http.extraHeader` through git's environment, never on a command line;
- for git:// and file:// remotes, unused.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controller.errors import Conflict, Invalid, NotFound, Unavailable
from controller.models import ServiceKind
from controller.oversight.brokers.context import BrokerContext
from controller.oversight.brokers.quarantine import quarantine
from controller.oversight.services import ServiceTarget

ARGS = frozenset({"remote", "branch", "force", "path"})
BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)(?!.*\.lock$)(?!.*/$)(?!.*\.$)[A-Za-z0-9._/+-]{1,200}$")
PUSH_TIMEOUT_S = 120.0
SCHEMES = ("ssh", "git", "http", "https", "file")


def push(ctx: BrokerContext, args: dict[str, Any]) -> dict[str, Any]:
    """Push `branch` of the workspace repository to the service `remote`; {pushed, remote, branch, commit}."""
    remote, branch, force, path = _parse(args)
    target, scheme = _remote(ctx, remote)
    if ctx.workspace is None:
        raise Conflict(
            "this sandbox's workspace is not on the controller's machine (a remote host, or no workspace volume), "
            "so the controller cannot read the branch to push"
        )
    scratch_root = ctx.settings.home / "brokers"  # on the home's disk: /tmp may be a small tmpfs
    scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="push-", dir=scratch_root) as scratch:
        folder = Path(scratch)
        (folder / "home").mkdir(mode=0o700)
        env = git_env(folder / "home")
        repo = folder / "repo.git"
        quarantine(ctx.workspace, path, repo, SAFE_GIT, env)
        commit = _commit_of(repo, branch, env, path)
        secrets = _credentials(ctx, target, scheme, folder, env)
        refspec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
        allow = ["-c", f"protocol.{scheme}.allow=always"]
        if scheme == "file":  # git receives on the admin's repository in this process's name: let it
            allow += ["-c", f"safe.directory={urlsplit(target.upstream).path}"]
        argv = [*git_command(repo), *allow, "push", "--porcelain", "--no-verify", target.upstream, refspec]
        done = run_git(argv, env, timeout_s=PUSH_TIMEOUT_S)
    if done.returncode != 0:
        raise Conflict(_refusal(remote, branch, done, secrets))
    return {"pushed": True, "remote": remote, "branch": branch, "commit": commit}


def _remote(ctx: BrokerContext, remote: str) -> tuple[ServiceTarget, str]:
    """The git service `remote` and its URL scheme."""
    target = ctx.service(remote)
    if target.kind is not ServiceKind.git:
        raise Invalid(
            f"service {remote!r} is a {target.kind.value} service, not a git remote; git.push needs one registered "
            f"with --kind git"
        )
    scheme = urlsplit(target.upstream).scheme.lower()
    if scheme not in SCHEMES:
        raise Invalid(
            f"git remote {remote!r} has an upstream git.push cannot use; give it ssh://, https://, git:// or file://"
        )
    return target, scheme


def _parse(args: dict[str, Any]) -> tuple[str, str, bool, str]:
    unknown = sorted(set(args) - ARGS)
    if unknown:
        raise Invalid(f"git.push does not take {', '.join(map(repr, unknown))}; it takes {', '.join(sorted(ARGS))}")
    remote, branch = args.get("remote"), args.get("branch")
    if not isinstance(remote, str) or not remote:
        raise Invalid("git.push needs 'remote', the name of a git service an admin registered (`fleetgate service ls`)")
    if not isinstance(branch, str) or not BRANCH.match(branch):
        raise Invalid(
            f"git.push needs 'branch', a branch name such as main or feature/x (letters, digits, '.', '_', '-', "
            f"'+', '/'; not starting with '-', no '..'); got {str(branch)[:80]!r}"
        )
    force = args.get("force", False)
    if not isinstance(force, bool):
        raise Invalid("git.push 'force' must be true or false")
    path = args.get("path", ".")
    if not isinstance(path, str) or not path:
        raise Invalid("git.push 'path' must be the repository's folder, relative to the workspace")
    return remote, branch, force, path


def git_env(home: Path) -> dict[str, str]:
    """An environment in which git reads no configuration but what the command line gives it and prompts nobody."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "LC_ALL": "C",
    }


# Settings that make git run programs, switched off, and every transport refused unless a command allows one.
SAFE_GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "credential.helper=",
            "-c", "protocol.allow=never"]  # fmt: skip


def git_command(repo: Path) -> list[str]:
    """git on the controller's own repository, and nothing else of this machine's configuration."""
    return [*SAFE_GIT, "-c", f"safe.directory={repo}", "--git-dir", str(repo)]


def run_git(argv: list[str], env: dict[str, str], *, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run git in a session of its own, so a timeout ends it and what it started (ssh) together."""
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", start_new_session=True) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise Unavailable(f"git did not finish within {timeout_s:g} s (is the remote reachable?)") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _commit_of(repo: Path, branch: str, env: dict[str, str], path: str) -> str:
    found = run_git([*git_command(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], env)
    commit = found.stdout.strip()
    if found.returncode == 0 and commit:
        return commit
    names = run_git(
        [*git_command(repo), "for-each-ref", "--format=%(refname:short)", "refs/heads/"], env
    ).stdout.split()
    if branch in names:
        raise Invalid(
            f"branch {branch!r} of the workspace repository points at a commit the repository does not hold in the "
            f"workspace (objects elsewhere, through alternates or links, are not read)"
        )
    have = ", ".join(names[:20]) or "none: commit something first"
    raise NotFound(f"the workspace repository at {path!r} has no branch {branch!r} (branches: {have})")


def _credentials(
    ctx: BrokerContext, target: ServiceTarget, scheme: str, folder: Path, env: dict[str, str]
) -> list[str]:
    """Put the service's credentials into git's environment; returns the values to keep out of messages."""
    if scheme == "ssh":
        env["GIT_SSH_COMMAND"] = _ssh_command(ctx, target, folder)
        env["GIT_SSH_VARIANT"] = "ssh"
        return [target.secret] if target.secret else []
    value = target.auth_value()
    if scheme in ("http", "https") and value:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                   GIT_CONFIG_VALUE_0=f"{target.header or 'Authorization'}: {value}")  # fmt: skip
        return [value, target.secret or value]
    return []


def _ssh_command(ctx: BrokerContext, target: ServiceTarget, folder: Path) -> str:
    options = ["-F", os.devnull, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"]
    if target.secret:
        key = folder / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(target.secret.strip() + "\n")  # ssh refuses a key file without its final newline
        options += ["-i", str(key)]
    else:
        options += ["-o", "IdentityFile=none"]
    try:
        known = ctx.secret(f"{target.name}.known_hosts")
    except NotFound:
        pinned = ctx.settings.home / "ssh" / "known_hosts"
        pinned.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        options += ["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={pinned}"]
    else:
        hosts = folder / "known_hosts"
        hosts.write_text(known.strip() + "\n")
        options += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={hosts}"]
    return shlex.join(["ssh", *options])


def _refusal(remote: str, branch: str, done: subprocess.CompletedProcess[str], secrets: list[str]) -> str:
    """What git said about a failed push, in a few lines, without credentials."""
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    said = " | ".join(line for line in lines if line != "Done")[-600:]
    for secret in secrets:
        said = said.replace(secret, "[secret]")
    if not any(line.startswith("!") for line in lines):
        return f"pushing {branch!r} to {remote!r} failed: {said}"
    behind = "non-fast-forward" in said or "fetch first" in said
    hint = "; the remote has commits the branch lacks: merge them first, or push with force: true" if behind else ""
    return f"the remote {remote!r} refused the push of {branch!r}{hint}: {said}"
