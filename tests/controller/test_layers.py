"""The shape of the house, checked from the source: which package may import which, and no cycles.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import is still a
dependency, only a hidden one. A new back-edge fails here with the file and line that added it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "controller"

# Lower layers first. A unit may import units of its own layer or below, never above; `apart` lists pairs of
# the same layer that must not know each other either.
LAYERS: list[set[str]] = [
    {"names", "errors", "config", "effects", "models"},
    {"db", "auth", "secrets"},
    {"events"},
    {"sandboxes", "oversight"},
    {"flows", "taskqueue"},
    {"fleet", "bootstrap"},
    {"main", "middleware", "api", "console", "gateway", "worker", "server", "cli"},
]
APART = [("sandboxes", "oversight"), ("oversight", "sandboxes")]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """The layer unit of `controller.x.y`: its first part under controller (a package or a top-level module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "controller" else None


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every controller module the file imports, with the line."""
    package = ".".join(("controller", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            yield base, node.lineno
            for alias in node.names:  # `from controller import images` names a module too
                yield f"{base}.{alias.name}", node.lineno


def sources() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if "migrations" not in p.parts]


@cache
def edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sources():
        here = unit_of(".".join(("controller", *path.relative_to(ROOT).with_suffix("").parts)))
        for module, line in imports(path):
            there = unit_of(module)
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if here and there and there != here and there in RANK and where not in found[(here, there)]:
                found[(here, there)].append(where)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(".".join(("controller", *p.relative_to(ROOT).with_suffix("").parts))) for p in sources()}
    assert units - {None, "__init__", "py"} <= set(RANK), f"give these a layer: {units - set(RANK) - {None}}"


def test_no_unit_imports_a_higher_layer() -> None:
    upward = [f"{a} -> {b} ({', '.join(w)})" for (a, b), w in edges().items() if RANK[b] > RANK[a]]
    assert not upward, "imports from a lower layer up:\n" + "\n".join(upward)


@pytest.mark.parametrize(("low", "other"), APART)
def test_sibling_domains_do_not_know_each_other(low: str, other: str) -> None:
    assert (low, other) not in edges(), f"{low} imports {other}: {edges()[(low, other)]}"


def test_no_domain_package_sees_the_composition_root_or_the_worker() -> None:
    for domain in ("sandboxes", "oversight", "events", "flows"):
        for edge in ("fleet", "worker"):
            assert (domain, edge) not in edges(), f"{domain} imports {edge}: {edges()[(domain, edge)]}"


@cache
def module_graph() -> dict[str, set[str]]:
    names = {".".join(("controller", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
             for p in sources()}  # fmt: skip
    graph: dict[str, set[str]] = {name: set() for name in names}
    for path in sources():
        here = ".".join(("controller", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        for module, _ in imports(path):
            if module in names and module != here and not here.startswith(module + "."):
                graph[here].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert RANK["fleet"] > RANK["oversight"]  # so oversight -> fleet would be reported as upward
