"""The tree keeps the shape docs/architecture.md gives it: no import cycles, every package mapped.

The rules that the core never imports a channel and that only the store
touches a database are tests/test_core_imports.py's.
"""

from __future__ import annotations

import re
from pathlib import Path

from import_graph import ROOT, TOPS, cycles, import_graph

DOC = ROOT / "docs" / "architecture.md"


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle among broadcaster/ and channels/, counting imports inside functions."""
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """A cycle closed by a function-level import (the usual way to hide one) is reported."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from pkg import a\n")
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_the_cycle_check_names_one_cycle_per_tangle() -> None:
    """Each set of modules importing each other is named once, by a shortest cycle through it."""
    graph = {
        "a": {"b"},
        "b": {"c", "a2"},
        "c": {"a"},
        "a2": {"b"},
        "d": {"a"},
        "x": {"y"},
        "y": {"x"},
    }
    assert cycles(graph) == [["a", "b", "c", "a"], ["x", "y", "x"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def packages() -> set[str]:
    return {
        init.parent.relative_to(ROOT).as_posix() + "/"
        for top in TOPS
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def doc_paths() -> set[str]:
    """Every ``broadcaster/...`` or ``channels/...`` path the doc names (but placeholders)."""
    found = re.findall(r"(?<![\w./-])((?:broadcaster|channels)/[\w/.]*)", DOC.read_text())
    return {path for path in found if "NAME" not in path}


def test_the_architecture_doc_maps_every_package() -> None:
    """docs/architecture.md names every package of the tree, so a reader can find any part."""
    assert sorted(packages() - doc_paths()) == []


def test_what_the_architecture_doc_names_exists() -> None:
    """Every module or folder docs/architecture.md names is where it says."""
    missing = [p for p in sorted(doc_paths()) if not (ROOT / p.rstrip(".")).exists()]
    assert missing == []
