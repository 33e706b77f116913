"""`fleetgate template ...`: list and manage templates over the API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from controller.cli.client import Client

template_app = typer.Typer(help="Templates: named sandbox recipes with a warm pool.", no_args_is_help=True)
out = Console(soft_wrap=True)


@template_app.command("ls")
def list_templates() -> None:
    """List the templates."""
    table = Table("name", "image", "pool", "cpus", "memory_mb", "pids", "ttl_s", box=None)
    for t in Client().get("/api/v1/templates")["items"]:
        table.add_row(
            t["name"],
            t["image"],
            str(t["pool_size"]),
            *(str(t[k] or "-") for k in ("cpus", "memory_mb", "pids", "ttl_s")),
        )
    out.print(table)


@template_app.command("create")
def create_template(
    name: str,
    image: Annotated[str, typer.Option(help="image on the host, e.g. fleetgate/python:latest")],
    pool: Annotated[int, typer.Option(help="warm sandboxes kept ready")] = 0,
    cpus: Annotated[float | None, typer.Option()] = None,
    memory: Annotated[int | None, typer.Option(help="MiB")] = None,
    pids: Annotated[int | None, typer.Option()] = None,
    disk: Annotated[int | None, typer.Option(help="workspace size limit in MiB")] = None,
    ttl: Annotated[int | None, typer.Option(help="seconds until removal")] = None,
) -> None:
    """Add a template (admin)."""
    body = {
        "name": name,
        "image": image,
        "pool_size": pool,
        "cpus": cpus,
        "memory_mb": memory,
        "pids": pids,
        "disk_mb": disk,
        "ttl_s": ttl,
    }
    created = Client().post("/api/v1/templates", json={k: v for k, v in body.items() if v is not None})
    out.print(f"template {created['name']} created (pool {created['pool_size']})")


@template_app.command("pool")
def set_pool(name: str, size: int) -> None:
    """Set a template's warm pool size (admin); 0 empties it."""
    updated = Client().request("PATCH", f"/api/v1/templates/{name}", json={"pool_size": size})
    out.print(f"template {updated['name']}: pool {updated['pool_size']}")


@template_app.command("rm")
def remove_template(name: str) -> None:
    """Delete a template and its warm pool (admin)."""
    Client().delete(f"/api/v1/templates/{name}")
    out.print(f"template {name} deleted")
