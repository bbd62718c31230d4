"""The core (``broadcaster/``) never imports ``channels``: imports stay one-way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "broadcaster"


def imported_names(source: str, package: tuple[str, ...]) -> list[str]:
    """Return every module name ``source`` imports, relative ones resolved against ``package``."""
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


def touches_channels(name: str) -> bool:
    return name == "channels" or name.startswith("channels.")


@pytest.mark.parametrize(
    "path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE.parent))
)
def test_core_module_does_not_import_channels(path: Path) -> None:
    """No core module imports ``channels``, absolutely, relatively or by a literal import_module."""
    package = path.relative_to(CORE.parent).with_suffix("").parts[:-1]
    names = imported_names(path.read_text("utf-8"), package)
    offending = [name for name in names if touches_channels(name)]
    assert offending == [], f"{path.name} imports {offending}"


@pytest.mark.parametrize(
    "source",
    [
        "import channels",
        "import channels.sms as sms",
        "from channels import hub",
        "from channels.sms import gateway",
        "from ... import channels",
        "import importlib\nimportlib.import_module('channels.sse')",
    ],
)
def test_the_check_catches_every_spelling(source: str) -> None:
    """The import walker sees each way of spelling an import of ``channels``."""
    names = imported_names(source, ("broadcaster", "api"))
    assert any(touches_channels(n) for n in names), names


def test_the_check_resolves_relative_imports_inside_the_core() -> None:
    """``from .. import chain`` inside ``broadcaster.api`` is the core's own module."""
    assert imported_names("from .. import chain", ("broadcaster", "api")) == [
        "broadcaster",
        "broadcaster.chain",
    ]
