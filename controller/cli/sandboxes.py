"""`fleetgate sandbox create|ls|exec|logs|stop|rm` over the REST API."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from controller.cli.client import Client, fail

sandbox_app = typer.Typer(
    help="Sandboxes: create, list, run commands, read output, stop, remove.", no_args_is_help=True
)
out = Console(soft_wrap=True)
_STATUS_STYLE = {
    "running": "green",
    "paused": "yellow",
    "exited": "dim",
    "stopped": "dim",
    "gone": "red",
    "removed": "dim",
}


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@sandbox_app.command("create")
def create(
    command: Annotated[list[str] | None, typer.Argument(help="command the sandbox runs (after --)")] = None,
    template: Annotated[str | None, typer.Option("--template", "-t")] = None,
    image: Annotated[str | None, typer.Option("--image", "-i")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU cores")] = None,
    memory: Annotated[int | None, typer.Option(help="memory limit in MiB")] = None,
    pids: Annotated[int | None, typer.Option(help="process limit")] = None,
    disk: Annotated[int | None, typer.Option(help="workspace size limit in MiB (default 5120)")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable")] = None,
    ttl: Annotated[int | None, typer.Option(help="seconds until it is removed")] = None,
    keep_volume: Annotated[bool, typer.Option(help="keep the workspace volume on removal")] = False,
    policy: Annotated[
        str | None,
        typer.Option(help="a preset (autonomous, supervised, strict) or a YAML/JSON policy file"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create and start a sandbox; prints its id."""
    limits = {"cpus": cpus, "memory_mb": memory, "pids": pids, "disk_mb": disk}
    resources = {k: v for k, v in limits.items() if v is not None}
    body: dict[str, Any] = {"resources": resources, "env": _parse_env(env or []), "keep_volume": keep_volume}
    for key, value in (
        ("template", template),
        ("image", image),
        ("ttl_s", ttl),
        ("command", command or None),
        ("policy", _policy(policy) if policy is not None else None),
    ):
        if value is not None:
            body[key] = value
    sandbox = Client().post("/api/v1/sandboxes", json=body)
    if as_json:
        print(json.dumps(sandbox, indent=2))
    else:
        print(sandbox["id"])


PRESETS = ("autonomous", "supervised", "strict")


def _policy(value: str) -> str:
    """A preset's name as it is, or a policy file's text (the controller checks it and names the line)."""
    if value in PRESETS:
        return value
    path = Path(value)
    if not path.is_file():
        fail(f"--policy takes a preset ({', '.join(PRESETS)}) or a YAML/JSON policy file; there is no file {value!r}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"--policy: cannot read {value}: {e}")


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@sandbox_app.command("ls")
def list_sandboxes(
    all_: Annotated[bool, typer.Option("--all", "-a", help="include removed sandboxes")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List sandboxes with their live status."""
    items = Client().get("/api/v1/sandboxes", params={"all": all_, "limit": 1000})["items"]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table("id", "status", "image", "template", "cpus", "mem", "age", "expires", box=None)
    for s in items:
        style = _STATUS_STYLE.get(s["status"], "")
        res = s["resources"]
        table.add_row(
            s["id"],
            f"[{style}]{s['status']}[/]" if style else s["status"],
            s["image"],
            s["template"] or "-",
            f"{res['cpus']:g}",
            f"{res['memory_mb']}M",
            _age(s["created_at"]),
            ("in " + _age(s["expires_at"]).lstrip("-")) if s["expires_at"] else "-",
        )
    out.print(table)


@sandbox_app.command("exec")
def exec_(
    sandbox_id: str,
    command: Annotated[list[str], typer.Argument(help="command and its arguments (after --)")],
    timeout: Annotated[float | None, typer.Option(help="seconds before it is killed")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable")] = None,
) -> None:
    """Run a command in a sandbox; prints its output and exits with its exit code."""
    body: dict[str, Any] = {"command": command, "env": _parse_env(env or [])}
    if timeout is not None:
        body["timeout_s"] = timeout
    result = Client().post(f"/api/v1/sandboxes/{sandbox_id}/exec", json=body)
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    if result.get("timed_out"):
        fail(f"timed out after {timeout or 'the default'} s and was killed", code=result["exit_code"])
    raise typer.Exit(result["exit_code"])


@sandbox_app.command("logs")
def logs(
    sandbox_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines, live")] = False,
    tail: Annotated[int | None, typer.Option(help="only the last N lines")] = None,
) -> None:
    """Print what the sandbox's command wrote to stdout and stderr."""
    client = Client()
    if follow:
        from controller.cli.live import follow_logs

        client.get(f"/api/v1/sandboxes/{sandbox_id}")  # a clear error for an unknown id before streaming
        follow_logs(client, sandbox_id)
        return
    after = 0
    while True:
        params: dict[str, Any] = {"after": after, "limit": 5000}
        if tail:
            params = {"tail": tail}
        page = client.get(f"/api/v1/sandboxes/{sandbox_id}/logs", params=params)
        for line in page["items"]:
            (sys.stdout if line["stream"] == "stdout" else sys.stderr).write(line["line"] + "\n")
            after = line["id"]
        sys.stdout.flush()
        if not page["next"] or tail:
            return


@sandbox_app.command("budget")
def budget(
    sandbox_id: str,
    model_requests: Annotated[int | None, typer.Option(min=0, help="model calls in all")] = None,
    model_tokens: Annotated[int | None, typer.Option(min=0, help="input + output tokens in all")] = None,
    connections: Annotated[int | None, typer.Option(min=0, help="connections and calls in all")] = None,
    bytes_: Annotated[int | None, typer.Option("--bytes", min=0, help="bytes in and out in all")] = None,
) -> None:
    """Show what a sandbox spent through its egress door against its budget; with options, change the budget
    (0 is no limit), e.g. to let an agent go on after it was stopped by a spent one."""
    client = Client()
    figures = {"model_requests": model_requests, "model_tokens": model_tokens, "connections": connections}
    figures["bytes"] = bytes_
    changes = {k: v for k, v in figures.items() if v is not None}
    if changes:
        usage = client.put(f"/api/v1/sandboxes/{sandbox_id}/budget", json=changes)
    else:
        usage = client.get(f"/api/v1/sandboxes/{sandbox_id}/usage")
    limits = usage["budget"]
    tokens = usage["input_tokens"] + usage["output_tokens"]
    moved = usage["bytes_in"] + usage["bytes_out"]
    for name, spent, limit in (
        ("model requests", usage["model_requests"], limits["model_requests"]),
        ("model tokens", tokens, limits["model_tokens"]),
        ("connections", usage["connections"], limits["connections"]),
        ("bytes", moved, limits["bytes"]),
    ):
        out.print(f"{name:15} {spent:>12} of {limit if limit else 'no limit'}")


@sandbox_app.command("stop")
def stop(sandbox_ids: list[str]) -> None:
    """Stop sandboxes (their workspace stays until rm)."""
    client = Client()
    for sandbox_id in sandbox_ids:
        client.post(f"/api/v1/sandboxes/{sandbox_id}/stop")
        out.print(f"stopped {sandbox_id}")


@sandbox_app.command("rm")
def remove(
    sandbox_ids: list[str],
    keep_volume: Annotated[bool, typer.Option(help="keep the workspace volume")] = False,
) -> None:
    """Remove sandboxes and their workspace volumes (unless kept)."""
    client = Client()
    params = {"keep_volume": "true"} if keep_volume else {}
    for sandbox_id in sandbox_ids:
        client.delete(f"/api/v1/sandboxes/{sandbox_id}", params=params)
        out.print(f"removed {sandbox_id}")
