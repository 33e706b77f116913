"""`fleetgate policy`: check a policy document and try actions against it (or a stack of them), offline.

No controller is needed: these commands only read files. FILE may also be a preset name (autonomous, supervised,
strict) when no file of that name exists. Every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from controller.oversight.policy import (
    PRESETS,
    ActionRequest,
    Decision,
    Layer,
    Policy,
    PolicyError,
    Risk,
    Verdict,
    evaluate,
    load_policy,
    preset,
)

policy_app = typer.Typer(help="Check policy documents and try actions against them, offline.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
COLOURS = {Decision.allow: "green", Decision.ask: "yellow", Decision.deny: "red"}
UPPER_LAYERS = ("fleet", "template")
Expected = tuple[ActionRequest, Decision | None]


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def read_policy(spec: str) -> Policy:
    """The policy in file `spec` (or the preset of that name); a bad one ends the command with its line."""
    path = Path(spec)
    if not path.exists() and spec in PRESETS:
        return preset(spec)
    try:
        return load_policy(path.read_text(encoding="utf-8"), source=spec)
    except PolicyError as e:
        fail(e.message)
    except OSError as e:
        fail(f"cannot read {spec}: {e.strerror or e}")
    except UnicodeDecodeError:
        fail(f"cannot read {spec}: it is not UTF-8 text")


@policy_app.command()
def check(file: Annotated[str, typer.Argument(help="a YAML or JSON policy file, or a preset name")]) -> None:
    """Load and validate a policy file, checking the match/not_match examples of its rules."""
    policy = read_policy(file)
    out.print(f"[green]OK[/] {escape(file)}: {len(policy.rules)} rules, default {policy.default}")


@policy_app.command("test")
def try_actions(
    file: Annotated[str, typer.Argument(help="the policy file (the sandbox layer), or a preset name")],
    tool: Annotated[str | None, typer.Option(help="the tool of one action to decide")] = None,
    args: Annotated[str, typer.Option(help="its arguments, as a JSON object")] = "{}",
    risk: Annotated[str, typer.Option(help="its risk: low, medium, high or critical")] = "low",
    examples: Annotated[
        Path | None, typer.Option(help="a YAML/JSON list of actions {tool, args?, risk?, expect?}")
    ] = None,
    layer: Annotated[list[str] | None, typer.Option(help="fleet=FILE or template=FILE: a layer above FILE")] = None,
) -> None:
    """Decide actions against FILE (under any --layer given) and show what decided each, and why."""
    layers = stack(file, layer or [])
    actions = ([one_action(tool, args, risk)] if tool is not None else []) + (
        read_examples(examples) if examples is not None else []
    )
    if not actions:
        fail("nothing to decide: give an action with --tool (and --args, --risk) or a file of them with --examples")
    missed = 0
    for action, expect in actions:
        verdict = evaluate(layers, action)
        show(action, verdict, expect)
        missed += expect is not None and verdict.decision != expect
    if missed:
        fail(f"{missed} of {len(actions)} actions were not decided as expected")


def stack(file: str, specs: list[str]) -> list[Layer]:
    """The layers, fleet first, with FILE as the sandbox layer at the bottom."""
    given: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or name not in UPPER_LAYERS or not path:
            fail(f"--layer {spec!r}: write fleet=FILE or template=FILE")
        if name in given:
            fail(f"--layer {name} is given twice")
        given[name] = path
    upper = [Layer(name, read_policy(given[name])) for name in UPPER_LAYERS if name in given]
    return [*upper, Layer("sandbox", read_policy(file))]


def one_action(tool: str, args: str, risk: str) -> Expected:
    try:
        parsed = json.loads(args)
    except ValueError as e:
        fail(f"--args is not valid JSON: {e}")
    if not isinstance(parsed, dict):
        fail(f'--args must be a JSON object, like \'{{"path": "a.txt"}}\' (got {args})')
    return ActionRequest(tool, parsed, parse_risk(risk, "--risk")), None


def parse_risk(value: Any, where: str) -> Risk:
    if value not in list(Risk):
        fail(f"{where} must be one of {', '.join(Risk)} (got {json.dumps(value, default=str)})")
    return Risk(value)


def read_examples(path: Path) -> list[Expected]:
    """Actions from a YAML/JSON list of {tool, args?, risk?, expect?}."""
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        fail(f"{path} is not valid YAML or JSON: {' '.join(str(e).split())}")
    if not isinstance(items, list):
        fail(f"{path} must hold a list of actions like {{tool: shell, args: {{command: ls}}, expect: allow}}")
    return [example(item, f"{path} item {i + 1}") for i, item in enumerate(items)]


def example(item: Any, where: str) -> Expected:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("tool"), str)
        or set(item) - {"tool", "args", "risk", "expect"}
    ):
        fail(f"{where}: write {{tool: NAME, args?: {{...}}, risk?: LEVEL, expect?: allow|ask|deny}}")
    if not isinstance(item.get("args", {}), dict):
        fail(f"{where}: args must be a mapping")
    expect = item.get("expect")
    if expect is not None and expect not in list(Decision):
        fail(f"{where}: expect must be one of allow, ask, deny (got {json.dumps(expect, default=str)})")
    risk = parse_risk(item.get("risk", "low"), f"{where}: risk")
    return ActionRequest(item["tool"], item.get("args", {}), risk), None if expect is None else Decision(expect)


def decided_by(verdict: Verdict) -> str:
    if verdict.layer is None:
        return "no policy"
    if verdict.rule is None:
        return f"{verdict.layer} layer, its default"
    return f"{verdict.layer} layer, {verdict.rule.label()}"


def show(action: ActionRequest, verdict: Verdict, expect: Decision | None) -> None:
    """Print the decision, what decided it and why; for shell, each segment's own decision."""
    colour = COLOURS[verdict.decision]
    mark = (
        ""
        if expect is None
        else (" [green](as expected)[/]" if expect == verdict.decision else f" [bold red](expected {expect})[/]")
    )
    out.print(f"[bold {colour}]{verdict.decision:5}[/] {escape(action.tool)} {escape(json.dumps(action.args))} "
              f"(risk {action.risk}){mark}")  # fmt: skip
    out.print(f"      decided by: {escape(decided_by(verdict))}")
    out.print(f"      reason: {escape(verdict.reason)}")
    for part in verdict.segments if len(verdict.segments) > 1 else ():
        text = part.segment.text if part.segment is not None else ""
        out.print(f"      [{COLOURS[part.decision]}]{part.decision:5}[/] `{escape(text)}` ({escape(decided_by(part))})")
