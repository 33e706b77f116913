"""`fleetgate service ...` and `fleetgate secret ...`: what sandboxes and brokers reach, and with which secrets.

A secret never comes from the command line, where the process list and the shell history would show it: it is
read from an environment variable named on the command line, or from standard input.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from controller.cli.client import Client, fail
from controller.models import ServiceKind

service_app = typer.Typer(
    help="Services: model and HTTP APIs sandboxes reach through the controller, git remotes for the broker.",
    no_args_is_help=True,
)
secret_app = typer.Typer(help="Named secrets for the brokers, sealed at rest.", no_args_is_help=True)
out = Console(soft_wrap=True)

ARGV_REFUSED = (
    "secrets are never taken from the command line (the process list and the shell history would show them); "
)


def from_env(variable: str) -> str:
    """The secret in the environment variable `variable`; an error naming it if unset or empty."""
    value = os.environ.get(variable)
    if value is None:
        fail(
            f"environment variable {variable} is not set; put the secret in it first "
            f"(`read -rs {variable} && export {variable}` does so without echo)"
        )
    if not value:
        fail(f"environment variable {variable} is empty; put the secret in it")
    return value


def from_stdin(name: str) -> str:
    """The secret typed at a prompt without echo (a terminal), else all of standard input less one newline."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {name} (not shown): ")
    else:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
    if not value:
        fail(f"no value for secret {name}: standard input was empty")
    return value


@service_app.command("add")
def add_service(
    name: str,
    kind: Annotated[ServiceKind, typer.Option(help="anthropic, openai, http, or git (a remote for git.push)")],
    upstream: Annotated[str, typer.Option(help="base URL, e.g. https://api.anthropic.com")],
    secret_env: Annotated[
        str | None, typer.Option(help="environment variable that holds the service's secret (API key)")
    ] = None,
    header: Annotated[
        str | None, typer.Option(help="header that carries the secret (anthropic: x-api-key, openai: Authorization)")
    ] = None,
    secret: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Add a service (admin); sandboxes reach model and HTTP services at http://127.0.0.1:7070/NAME."""
    if secret is not None:
        fail(ARGV_REFUSED + "use --secret-env VAR")
    body: dict[str, str] = {"name": name, "kind": kind.value, "upstream": upstream}
    if secret_env is not None:
        body["secret"] = from_env(secret_env)
    if header is not None:
        body["header"] = header
    created = Client().post("/api/v1/services", json=body)
    with_secret = ", with a secret" if created["has_secret"] else ""
    where = f"; sandboxes reach it at {created['base_url']}" if created["base_url"] else ""
    out.print(f"service {created['name']} added ({created['kind']}{with_secret}){where}")


@service_app.command("ls")
def list_services() -> None:
    """List the services (their secrets are never shown)."""
    table = Table("name", "kind", "upstream", "header", "secret", "sandboxes use", box=None)
    for s in Client().get("/api/v1/services")["items"]:
        table.add_row(
            s["name"],
            s["kind"],
            s["upstream"],
            s["header"] or "-",
            "yes" if s["has_secret"] else "-",
            s["base_url"] or "-",
        )
    out.print(table)


@service_app.command("rm")
def remove_service(name: str) -> None:
    """Remove a service (admin)."""
    Client().delete(f"/api/v1/services/{quote(name, safe='')}")
    out.print(f"service {name} removed")


@secret_app.command("set")
def set_secret(
    name: str,
    from_env_var: Annotated[
        str | None, typer.Option("--from-env", help="environment variable that holds the value (else stdin)")
    ] = None,
    value: Annotated[str | None, typer.Argument(hidden=True, show_default=False)] = None,
) -> None:
    """Store or replace a secret (admin), from --from-env VAR or standard input (a prompt on a terminal)."""
    if value is not None:
        fail(ARGV_REFUSED + "use --from-env VAR or standard input")
    secret = from_env(from_env_var) if from_env_var is not None else from_stdin(name)
    Client().request("PUT", f"/api/v1/secrets/{quote(name, safe='')}", json={"value": secret})
    out.print(f"secret {name} set")


@secret_app.command("ls")
def list_secrets() -> None:
    """List the secrets' names and times (admin); never their values."""
    table = Table("name", "created", "updated", "by", box=None)
    for s in Client().get("/api/v1/secrets")["items"]:
        table.add_row(s["name"], s["created_at"][:19], s["updated_at"][:19], s["created_by"])
    out.print(table)


@secret_app.command("rm")
def remove_secret(name: str) -> None:
    """Remove a secret (admin)."""
    Client().delete(f"/api/v1/secrets/{quote(name, safe='')}")
    out.print(f"secret {name} removed")
