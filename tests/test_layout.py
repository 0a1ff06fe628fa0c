"""The house: wings with one door each, no import cycle, other libraries' public API only."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"graph": "langfusion.graph", "tools": "langfusion.tools"}


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The langfusion modules ``path`` imports anywhere in it (deferred and typing-only too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name in known:
                yield name, node.lineno


def test_no_module_of_graph_or_tools_takes_part_in_an_import_cycle() -> None:
    known = modules()
    edges = {
        name: {target for target, _ in imported(path, known) if target != name}
        for name, path in known.items()
    }
    # A package's door importing its own rooms is how a door works, not a cycle.
    for name in edges:
        edges[name] = {t for t in edges[name] if not t.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_pipeline_never_imports_the_tools() -> None:
    known = modules()
    upward = [
        f"{name} -> {target} (line {line})"
        for name, path in known.items()
        if name.startswith("langfusion.graph")
        for target, line in imported(path, known)
        if target.startswith("langfusion.tools")
    ]
    assert upward == []


def private_names(path: Path) -> Iterator[str]:
    """Underscored names ``path`` imports from a library other than langfusion."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module.split(".")[0] in ("langfusion", "tests", "benchmarks", "__future__"):
            continue
        parts = node.module.split(".") + [a.name for a in node.names]
        for alias in node.names:
            if alias.name.startswith("_") or any(p.startswith("_") for p in parts[:-1]):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                yield f"{where}: from {node.module} import {alias.name}"


@pytest.mark.parametrize("folder", ["graph", "tools", "tests"])
def test_no_private_name_of_another_library_is_imported(folder: str) -> None:
    found = [hit for path in sorted((REPO / folder).rglob("*.py")) for hit in private_names(path)]
    assert found == []
