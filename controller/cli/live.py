"""Live views in the terminal: `fleetgate watch` (the fleet, Rich Live) and the SSE reader behind `logs -f`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controller.cli.client import Client, fail

out = Console(soft_wrap=True)
STYLE = {"running": "green", "paused": "yellow", "exited": "dim", "stopped": "dim", "gone": "red", "creating": "cyan"}


def events(client: Client, params: dict[str, Any], idle_s: float | None = None) -> Iterator[dict[str, Any]]:
    """Parsed SSE events, reconnecting with Last-Event-ID (so nothing is missed across a reconnect).

    With `idle_s`, an empty dict is yielded whenever that long passes without an event (keep-alives count).
    """
    last: str | None = None
    while True:
        headers = {"Last-Event-ID": last} if last else {}
        try:
            with client.stream("GET", "/api/v1/events", params=params, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    fail(f"{response.json().get('detail', response.text)} (HTTP {response.status_code})")
                for event in parse(response.iter_lines(), idle=idle_s is not None):
                    last = event.get("id", last)
                    yield event
        except httpx.HTTPError:
            time.sleep(1)


def parse(lines: Iterator[str], idle: bool = False) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
        elif idle and line.startswith(":"):
            yield {}


def follow_logs(client: Client, sandbox_id: str) -> None:
    """Print the sandbox's output from the start, then live, until it stops running."""
    for event in events(client, {"sandbox": sandbox_id, "after": "0", "kinds": "stdout,stderr,lifecycle"}):
        kind, data = event["kind"], event["data"]
        if kind in ("stdout", "stderr"):
            typer.echo(data.get("line", ""), err=kind == "stderr")
        elif kind == "lifecycle" and data.get("status") in ("exited", "stopped", "removed", "gone"):
            return


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


class FleetView:
    """What `watch` shows: sandboxes, their latest action and resources, and the queue length."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.last_action: dict[str, str] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self.pending = 0
        self.sandboxes: list[dict[str, Any]] = []

    def refresh(self) -> None:
        self.sandboxes = self.client.get("/api/v1/sandboxes", params={"limit": 500})["items"]
        self.pending = self.client.get("/api/v1/approvals", params={"limit": 1})["pending"]

    def apply(self, event: dict[str, Any]) -> None:
        data, sandbox = event.get("data", {}), event.get("sandbox_id", "")
        if event["kind"] == "action":
            self.last_action[sandbox] = f"{data.get('tool')} [{data.get('status')}]"
        elif event["kind"] == "resources":
            self.resources[sandbox] = data

    def render(self) -> Group:
        table = Table("sandbox", "status", "agent", "current action", "cpu", "memory", "age", box=None, expand=True)
        for s in self.sandboxes:
            res = self.resources.get(s["id"], {})
            cpu = f"{res['cpu_pct']:.0f}%" if res.get("cpu_pct") is not None else "-"
            mem = f"{res['mem_bytes'] >> 20}M" if res.get("mem_bytes") else "-"
            agent = s["template"] or " ".join(s["command"] or [])[:30] or s["image"]
            status = Text(s["status"], style=STYLE.get(s["status"], ""))
            table.add_row(s["id"], status, agent, self.last_action.get(s["id"], "-"), cpu, mem, _age(s["created_at"]))
        badge = Text(f" {self.pending} pending approval(s) ", style="bold white on red" if self.pending else "dim")
        return Group(Text.assemble(("fleetgate ", "bold"), badge, f"  {len(self.sandboxes)} sandboxes"), table)


def watch(interval: float = typer.Option(2.0, help="seconds between full refreshes")) -> None:
    """The live fleet in the terminal: status, current action, CPU and memory, and the approval count."""
    client = Client()
    view = FleetView(client)
    view.refresh()
    if not out.is_terminal:  # piped or logged: print a snapshot per interval instead of redrawing in place
        out.print(view.render())
    stream = events(client, {"kinds": "lifecycle,action,approval,resources", "after": "$"}, idle_s=interval)
    deadline = time.monotonic() + interval
    with Live(view.render(), console=out, refresh_per_second=4, screen=False, auto_refresh=out.is_terminal) as live:
        for event in stream:
            if event:
                view.apply(event)
            if not event or event["kind"] in ("lifecycle", "approval") or time.monotonic() > deadline:
                view.refresh()
                deadline = time.monotonic() + interval
                if not out.is_terminal:
                    out.print(view.render())
            live.update(view.render())
