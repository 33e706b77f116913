"""The `fleetgate` command: run the controller, administer it on its machine, and drive it over the API."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from controller.cli import oversight
from controller.cli.client import Client, err, fail
from controller.cli.demo import demo
from controller.cli.live import watch
from controller.cli.policy import policy_app
from controller.cli.sandboxes import sandbox_app
from controller.cli.services import secret_app, service_app
from controller.cli.templates import template_app
from controller.config import get_settings
from controller.errors import FleetgateError
from controller.models import Role

app = typer.Typer(
    name="fleetgate",
    help="Run a fleet of AI agents in hardened sandboxes, under human oversight.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(
    help="API tokens (on the controller's machine, straight to the database).", no_args_is_help=True
)
images_app = typer.Typer(help="The sandbox images.", no_args_is_help=True)
out = Console(soft_wrap=True)


@app.command()
def up(detach: Annotated[bool, typer.Option("--detach", "-d", help="run in the background")] = False) -> None:
    """Start the controller: API, runtime gateway, Celery worker and beat."""
    from controller import server

    settings = get_settings()
    if detach:
        pid = server.detach(settings)
        out.print(f"fleetgate is up at [bold]{settings.url}[/] (pid {pid}; logs in {settings.log_dir})")
        return
    if (running := server.running_pid(settings)) is not None:
        fail(f"fleetgate already runs for {settings.home} (pid {running}); `fleetgate down` stops it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out.print(f"fleetgate on [bold]{settings.url}[/], runtime socket {settings.gateway_socket}")
    server.serve(settings)


@app.command()
def down() -> None:
    """Stop the background controller of this home."""
    from controller import server

    pid = server.stop(get_settings())
    out.print("fleetgate was not running" if pid is None else f"stopped fleetgate (pid {pid})")


@app.command()
def status() -> None:
    """Whether the controller runs, and (with FLEETGATE_TOKEN) the health of what it depends on."""
    from controller import server
    from controller.config import get_client_settings

    settings = get_settings()
    client = get_client_settings()
    url = (client.url or settings.url).rstrip("/")  # FLEETGATE_URL, as every other command
    pid = server.running_pid(settings) if url == settings.url else None  # only this home's controller has one
    up_now = server.healthy(url)
    out.print(f"controller: {'[green]up[/]' if up_now else '[red]down[/]'} at {url}" + (f" (pid {pid})" if pid else ""))
    if not up_now:
        raise typer.Exit(1)
    if client.token:
        checks = Client().get("/api/v1/status")["checks"]
        for name, value in checks.items():
            if isinstance(value, dict):
                for host, state in value.items():
                    out.print(f"{name} ({host}): {state}")
            else:
                out.print(f"{name}: {value}")


@app.command()
def migrate() -> None:
    """Apply the database migrations (fleetgate up does this too)."""
    from controller.db import migrate as run

    run(get_settings())
    out.print("database is at the newest migration")


@app.command()
def init(admin: Annotated[str, typer.Option(help="name of the first admin")] = "admin") -> None:
    """Prepare a new home: migrate, create the default template and the first admin (its token is shown once)."""
    from controller.bootstrap import initialise

    settings = get_settings()
    token = initialise(settings, admin=admin)
    if token is None:
        out.print("already initialised; an admin exists (mint a new token with `fleetgate token create`)")
    else:
        print(f"admin token (shown once): {token}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="user the token is for (created if new)")],
    role: Annotated[Role, typer.Option(help="admin, operator, approver or viewer")],
    label: Annotated[str, typer.Option(help="what the token is for")] = "cli",
) -> None:
    """Mint a token straight in the database (no running API needed): how an admin recovers access."""
    import getpass

    from controller.db import migrate
    from controller.fleet import Fleet

    settings = get_settings()
    migrate(settings)
    actor = f"cli:{getpass.getuser()}"  # on the controller's machine, as this account
    print(Fleet(settings).admin.mint_token(actor=actor, name=name, role=role, label=label).token)


@images_app.command("build")
def images_build(
    base: Annotated[
        str | None, typer.Option(help="build on this image instead of debootstrap (needs a registry)")
    ] = None,
    force: Annotated[bool, typer.Option(help="rebuild even when the images are current")] = False,
) -> None:
    """Build fleetgate/base (debootstrap, offline) and fleetgate/python on the local engine."""
    from rich.live import Live
    from rich.spinner import Spinner

    from controller.sandboxes.docker_engine import DockerEngine
    from controller.sandboxes.hosts import LOCAL

    engine = DockerEngine(LOCAL, get_settings().docker_url)
    spinner = Spinner("dots", text="starting")
    lines = 0

    def progress(message: str) -> None:
        nonlocal lines
        lines += 1
        spinner.update(text=f"[dim]{lines:>4}[/] {message[:150]}")
        if message.startswith(("Step ", "debootstrap", "importing", "building", "pulling", "fleetgate/")):
            live.console.print(f"  {message}", highlight=False, no_wrap=True, overflow="ellipsis")

    with Live(spinner, console=out, transient=True) as live:
        refs = engine.build_images(base=base, force=force, progress=progress)
    for name, ref in refs.items():
        out.print(f"[green]✓[/] {name}: {ref}")


for command in (oversight.approvals, oversight.approve, oversight.deny, oversight.actions, oversight.review):
    app.command()(command)
app.command()(watch)
app.command()(demo)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(template_app, name="template")
app.add_typer(service_app, name="service")
app.add_typer(secret_app, name="secret")
app.add_typer(policy_app, name="policy")
app.add_typer(oversight.grants_app, name="grants")
app.add_typer(oversight.audit_app, name="audit")
app.add_typer(token_app, name="token")
app.add_typer(images_app, name="images")


def main() -> None:
    try:
        app()
    except FleetgateError as e:  # raised outside a typer command's own handling: print it, then exit
        err.print(f"[bold red]error:[/] {e.message}", highlight=False)
        sys.exit(1)
