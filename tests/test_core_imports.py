"""The core (``broadcaster/``) never imports ``channels``: imports stay one-way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from import_graph import imported_names

CORE = Path(__file__).resolve().parent.parent / "broadcaster"


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


ROOT = CORE.parent
DRIVERS = ("sqlite3", "psycopg", "psycopg_pool", "asyncpg")
#: A string that starts like a SQL statement (keywords in capitals, as every query here is written).
SQL = re.compile(
    r"^\s*(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+"
    r"(TABLE|INDEX|TRIGGER|VIRTUAL)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE|PRAGMA\s|VACUUM)",
    re.DOTALL,
)


def sql_strings(source: str) -> list[str]:
    """Return the string literals of ``source`` (f-strings joined) that read as SQL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "x" for part in node.values
            )
        else:
            continue
        if SQL.match(text):
            found.append(text[:60])
    return found


def outside_the_store() -> list[Path]:
    paths = [*CORE.rglob("*.py"), *(ROOT / "channels").rglob("*.py")]
    return sorted(p for p in paths if "store" not in p.relative_to(CORE.parent).parts[1:2])


@pytest.mark.parametrize("path", outside_the_store(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_store_touches_a_database(path: Path) -> None:
    """Outside ``broadcaster/store/`` no module imports a database driver or holds SQL text."""
    source = path.read_text("utf-8")
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    drivers = [n for n in imported_names(source, package) if n.split(".")[0] in DRIVERS]
    assert drivers == [], f"{path.name} imports {drivers}"
    assert sql_strings(source) == [], f"{path.name} holds SQL"


@pytest.mark.parametrize(
    "source",
    [
        'q = "SELECT a FROM t WHERE b = ?"',
        'conn.execute("INSERT INTO t (a) VALUES (?)", (1,))',
        'conn.execute(f"UPDATE {table} SET a = 1")',
        'SCHEMA = """\nCREATE TABLE IF NOT EXISTS t (a TEXT);\n"""',
        'conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")',
    ],
)
def test_the_sql_check_sees_queries_and_ddl(source: str) -> None:
    """The SQL check catches plain, f-string and triple-quoted statements."""
    assert sql_strings(source)


def test_the_sql_check_leaves_prose_alone() -> None:
    """Words like "select" or "update" in messages are not SQL."""
    source = 'msg = "select an incident to update"\nhelp = "Delete from the list"'
    assert sql_strings(source) == []
