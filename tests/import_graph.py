"""Read which modules of the project import which, from the source alone (no import runs).

Shared by the tests that keep the architecture's rules: the core never imports
a channel, only the store touches a database, no two modules import each other
(not even through a chain, and not even inside a function).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("broadcaster", "channels")


def imported_names(source: str, package: tuple[str, ...]) -> list[str]:
    """Return every module name ``source`` imports, relative ones resolved against ``package``.

    Imports anywhere count: at module level, inside functions, under
    ``TYPE_CHECKING``, and ``import_module("literal")`` calls. For
    ``from X import a`` both ``X`` and ``X.a`` are returned (``a`` may be a module).
    """
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module:
                names.append(module)
            names.extend(".".join(filter(None, (module, alias.name))) for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path, root: Path = ROOT) -> tuple[str, ...]:
    """The package a module's relative imports start from (a package's own, for __init__)."""
    return path.relative_to(root).with_suffix("").parts[:-1]


def project_modules(root: Path = ROOT, tops: Iterable[str] = TOPS) -> dict[str, Path]:
    """Map every module and package of the project to its file."""
    return {
        module_name(path, root): path
        for top in tops
        for path in sorted((root / top).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def import_graph(root: Path = ROOT, tops: Iterable[str] = TOPS) -> dict[str, set[str]]:
    """Map each project module to the project modules it imports (``X`` for ``from X import f``)."""
    modules = project_modules(root, tops)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = imported_names(path.read_text("utf-8"), package_of(path, root))
        graph[name] = {n for n in imported if n in modules and n != name}
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Return one import cycle (``a -> b -> ... -> a``) per tangle of mutually importing modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    tangles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                tangles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_within(set(tangle), graph) for tangle in sorted(tangles)]


def _cycle_within(tangle: set[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Return a shortest cycle through the first member of ``tangle``, closed on itself."""
    start = min(tangle)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, ())):
                if successor == start:
                    return [*paths[node], start]
                if successor in tangle and successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{sorted(tangle)} is not a cycle")
