"""`fleetgate demo`: three sandboxes running the scripted agent under a policy that shows every oversight point."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from controller.cli.client import Client, fail
from controller.config import get_settings

out = Console(soft_wrap=True)
TEMPLATE = "demo"
OPERATOR = "demo-operator"
ORIGIN = "demo-origin"  # the git remote the demo agents push to (a service of kind git)
DEMO_POLICY = """\
description: the fleetgate demo - free to read and test, asks before anything leaves the sandbox
default: ask
rules:
  - name: reading files is free
    tool: read_file
    decision: allow
  - name: tests and local git are free
    tool: shell
    command: ["python3 -m unittest*", "git status*", "git diff*", "git log*", "ls*", "cat *"]
    decision: allow
  - name: pushing code waits for an approver
    tool: git.push
    decision: ask
    approvers: [approver]
    timeout_s: 3600
  - name: email waits for an approver
    tool: email.send
    decision: ask
    timeout_s: 3600
  - name: payments above the limit are refused
    tool: "payment.*"
    args: {amount: "> 100"}
    decision: deny
    message: payments over 100 need a purchase order, not an agent
  - name: smaller payments wait for two approvers
    tool: "payment.*"
    decision: ask
    quorum: 2
"""


def demo(
    count: Annotated[int, typer.Option(help="how many agents to start")] = 3,
    ttl: Annotated[int, typer.Option(help="seconds before the demo sandboxes are removed")] = 3600,
) -> None:
    """Start scripted agents that read and test freely, get a payment refused, and wait for you to approve a push
    (to a bare repository the controller pushes to) and an email. Needs an admin FLEETGATE_TOKEN; the agents run
    as the user `demo-operator`."""
    admin = Client()
    origin = ensure_origin(admin)
    if admin.get_or_none(f"/api/v1/templates/{TEMPLATE}") is None:
        admin.post(
            "/api/v1/templates",
            json={
                "name": TEMPLATE,
                "image": "fleetgate/python:latest",
                "command": ["python3", "-m", "agent_runtime.demo"],
                "policy": DEMO_POLICY,
                "ttl_s": ttl,
            },
        )
        out.print(f"created template [bold]{TEMPLATE}[/] with the demo policy")
    operator = admin.post("/api/v1/tokens", json={"name": OPERATOR, "role": "operator", "label": "demo"})["token"]
    agents = Client(token=operator)
    ids = [agents.post("/api/v1/sandboxes", json={"template": TEMPLATE})["id"] for _ in range(count)]
    out.print(f"started {len(ids)} agents: {', '.join(ids)}")
    out.print("they will ask to push and to send an email; watch the queue with [bold]fleetgate approvals[/],")
    out.print("decide with [bold]fleetgate approve ID[/] / [bold]fleetgate deny ID -m 'why'[/],")
    out.print("and read what they did with [bold]fleetgate sandbox logs ID[/] and [bold]fleetgate actions[/].")
    if origin is not None:
        out.print(f"an approved push lands in {origin}: [bold]git --git-dir {origin} log[/]", highlight=False)


def ensure_origin(admin: Client) -> Path | None:
    """The git service the demo agents push to: a bare repository in the controller's home, registered once.
    Returns the repository's folder when it is on this machine."""
    services: list[dict[str, Any]] = admin.get("/api/v1/services")["items"]
    found = next((s for s in services if s["name"] == ORIGIN), None)
    if found is not None:
        upstream = str(found["upstream"])
        return Path(upstream.removeprefix("file://")) if upstream.startswith("file://") else None
    bare = get_settings().home / "demo" / "origin.git"
    if admin.get("/api/v1/me")["role"] != "admin":
        fail(
            f"the demo pushes to a git service {ORIGIN!r}, which only an admin can add: ask one to run\n"
            f"  git init --bare {bare} && fleetgate service add {ORIGIN} --kind git --upstream file://{bare}\n"
            f"or run the demo with an admin token"
        )
    if not (bare / "HEAD").exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            fail(f"could not make the demo's bare repository {bare}: {made.stderr.strip()}")
    admin.post("/api/v1/services", json={"name": ORIGIN, "kind": "git", "upstream": f"file://{bare}"})
    out.print(f"added the git service [bold]{ORIGIN}[/] (file://{bare}) for the demo's pushes", highlight=False)
    return bare
