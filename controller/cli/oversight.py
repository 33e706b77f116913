"""The approval queue, grants, actions and the audit log from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from controller.cli.client import Client, fail

out = Console(soft_wrap=True)
grants_app = typer.Typer(help="Grants: remembered approvals.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: verify its chain, export it, read it.", no_args_is_help=True)


def _when(stamp: str | None) -> str:
    if not stamp:
        return "-"
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = int((moment - datetime.now(UTC)).total_seconds())
    sign, seconds = ("in ", seconds) if seconds >= 0 else ("", -seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}" + ("" if sign else " ago")
    return f"{sign}{seconds}s" + ("" if sign else " ago")


def approvals(
    all_: Annotated[bool, typer.Option("--all", "-a", help="every status, not only pending")] = False,
    sandbox: Annotated[str | None, typer.Option(help="only this sandbox's items")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The fleet's approval queue, newest first."""
    params: dict[str, Any] = {"limit": 500}
    if all_:
        params["status"] = ""
    if sandbox:
        params["sandbox"] = sandbox
    page = Client().get("/api/v1/approvals", params=params)
    if as_json:
        print(json.dumps(page["items"], indent=2))
        return
    rows = []
    for a in page["items"]:
        votes = f"{sum(v['decision'] == 'approve' for v in a['votes'])}/{a['quorum']}"
        what = describe(a["action"]["tool"], a["action"]["args"]) if a["action"] else a["summary"]
        rows.append(
            (str(a["id"]), a["kind"], a["status"], a["sandbox_id"], a["risk"], votes, _when(a["deadline"]), what)
        )
    headers = ("id", "kind", "status", "sandbox", "risk", "votes", "deadline", "what")
    out.print(_table(headers, rows, squeeze=1))
    out.print(f"{page['pending']} pending")


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, squeeze: int) -> Table:
    """A table whose first columns never wrap or shrink (ids are copied from them); the last `squeeze` columns
    share what room is left and end in an ellipsis."""
    table = Table(*headers, box=None)
    fixed = [max([len(headers[i]), *(len(r[i]) for r in rows)]) for i in range(len(headers) - squeeze)]
    for column, width in zip(table.columns, fixed, strict=False):
        column.no_wrap, column.min_width = True, width
    room = max(20, out.width - sum(fixed) - 2 * len(headers)) // squeeze
    for column in table.columns[-squeeze:]:
        column.no_wrap, column.overflow, column.max_width = True, "ellipsis", room
    for row in rows:
        table.add_row(*row)
    return table


def describe(tool: str, args: dict[str, Any]) -> str:
    """An action in a few words: a shell command as typed, other tools as `tool key=value ...`."""
    if tool == "shell" and isinstance(args.get("command"), str):
        return f"$ {args['command']}"
    return " ".join([tool, *(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in args.items())])


def _decide(approval_id: int, body: dict[str, Any]) -> None:
    result = Client().post(f"/api/v1/approvals/{approval_id}/decision", json=body)
    approval = result["approval"]
    if result["settled"]:
        out.print(f"approval {approval_id}: {approval['status']}")
    else:
        got = sum(v["decision"] == "approve" for v in approval["votes"])
        out.print(f"approval {approval_id}: your vote is in ({got} of {approval['quorum']} approvals)")
    if result.get("grant"):
        grant = result["grant"]
        out.print(f"remembered as grant {grant['id']} ({grant['scope']}): {grant['tool']} {json.dumps(grant['match'])}")


def approve(
    approval_id: int,
    message: Annotated[str | None, typer.Option("--message", "-m", help="note to the agent")] = None,
    args: Annotated[str | None, typer.Option(help="edited arguments, as JSON")] = None,
    remember: Annotated[
        str | None, typer.Option(help="also allow the same action from now on: sandbox, template or fleet")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to confirm a grant")] = False,
) -> None:
    """Approve a pending item (optionally with edited args; optionally remembered as a grant)."""
    body: dict[str, Any] = {"decision": "approve", "message": message}
    if args is not None:
        try:
            body["args"] = json.loads(args)
        except json.JSONDecodeError as e:
            fail(f"--args must be a JSON object: {e}")
    if remember is not None:
        preview = Client().get(f"/api/v1/approvals/{approval_id}/preview", params={"scope": remember})
        out.print(f"the grant would allow {preview['tool']} {json.dumps(preview['match'])} ({remember}-wide)")
        out.print(f"it would have covered {preview['matched']} past action(s)")
        for action in preview["actions"][:10]:
            out.print(f"  action {action['id']} in {action['sandbox_id']}: {json.dumps(action['args'])[:100]}")
        if not yes and not typer.confirm("save this grant?"):
            raise typer.Exit(1)
        body["remember"] = remember
    _decide(approval_id, body)


def deny(
    approval_id: int,
    message: Annotated[str | None, typer.Option("--message", "-m", help="what the agent is told")] = None,
) -> None:
    """Deny a pending item; the agent receives the message."""
    _decide(approval_id, {"decision": "deny", "message": message})


def actions(
    sandbox: Annotated[str | None, typer.Option(help="only this sandbox's actions")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every gated action with its decision and what decided it."""
    params: dict[str, Any] = {"limit": limit}
    if sandbox:
        params["sandbox"] = sandbox
    items = Client().get("/api/v1/actions", params=params)["items"]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    rows = [
        (
            str(a["id"]),
            a["sandbox_id"],
            a["status"],
            a["decided_by"] or "-",
            a["review"] or "-",
            describe(a["tool"], a["args"]),
            str(a["decision"].get("reason") or ""),
        )
        for a in items
    ]
    out.print(_table(("id", "sandbox", "status", "by", "review", "action", "why"), rows, squeeze=2))


def review(
    action_id: int,
    flag: Annotated[bool, typer.Option("--flag", help="flag it instead of marking it reviewed")] = False,
    note: Annotated[str | None, typer.Option("--note", "-n")] = None,
) -> None:
    """Mark an action reviewed (or flagged) after the fact."""
    mark = "flagged" if flag else "reviewed"
    Client().post(f"/api/v1/actions/{action_id}/review", json={"review": mark, "note": note})
    out.print(f"action {action_id} {mark}")


@grants_app.command("ls")
def list_grants(all_: Annotated[bool, typer.Option("--all", "-a")] = False) -> None:
    """Active grants (or all of them)."""
    table = Table("id", "scope", "ref", "tool", "match", "by", "revoked", box=None)
    for g in Client().get("/api/v1/grants", params={"all": all_})["items"]:
        table.add_row(
            str(g["id"]),
            g["scope"],
            g["scope_ref"] or "-",
            g["tool"],
            json.dumps(g["match"])[:60],
            g["created_by"],
            _when(g["revoked_at"]) if g["revoked_at"] else "",
        )
    out.print(table)


@grants_app.command("revoke")
def revoke_grant(grant_id: int) -> None:
    """Revoke a grant: matching actions ask again."""
    Client().delete(f"/api/v1/grants/{grant_id}")
    out.print(f"grant {grant_id} revoked")


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        str | None,
        typer.Option(help="a head an earlier verify printed (ID:HASH): also catches rows deleted from the end"),
    ] = None,
) -> None:
    """Recompute the audit chain straight from the database; exits 1 and names the rows if any was changed."""
    from sqlmodel import Session

    from controller.config import get_settings
    from controller.db import existing_engine
    from controller.oversight.audit import Head, verify

    since = Head.parse(head) if head is not None else None
    with Session(existing_engine(get_settings())) as session:
        result = verify(session, since=since)
    if result.ok:
        now = Head(result.head_id, result.head)
        out.print(f"[green]audit chain intact[/]: {result.checked} entries, head {now}", highlight=False)
        out.print(f"keep it elsewhere: `fleetgate audit verify --head {now}` later finds rows deleted from the end")
        return
    for problem in result.problems:
        out.print(f"[red]✗[/] {problem}", highlight=False)
    fail(f"the audit log was tampered with ({len(result.problems)} problem(s) in {result.checked} entries)")


@audit_app.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")] = None,
) -> None:
    """Write the whole audit log as JSON lines, oldest first (straight from the database)."""
    from sqlmodel import Session

    from controller.config import get_settings
    from controller.db import existing_engine
    from controller.oversight.audit import export

    engine = existing_engine(get_settings())  # before the output file is made
    try:
        target = open(output, "w") if output else sys.stdout  # noqa: SIM115
    except OSError as e:
        fail(f"cannot write {output}: {e.strerror}")
    count = 0
    with Session(engine) as session:
        for line in export(session):
            target.write(line + "\n")
            count += 1
    if output:
        target.close()
        out.print(f"wrote {count} entries to {output}")


@audit_app.command("ls")
def audit_list(
    q: Annotated[str | None, typer.Option("--search", "-s", help="text in actor, event or subject")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """The newest audit entries."""
    params: dict[str, Any] = {"limit": limit}
    if q:
        params["q"] = q
    table = Table("id", "when", "actor", "event", "subject", box=None)
    for e in Client().get("/api/v1/audit", params=params)["items"]:
        table.add_row(str(e["id"]), _when(e["created_at"]), e["actor"], e["event"], e["subject"])
    out.print(table)
