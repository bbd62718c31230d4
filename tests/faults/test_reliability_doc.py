"""Check that every proof docs/reliability.md names is a test that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
CITED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?(?:\[[^\]]*\])?`")
FOLLOW_UP = re.compile(r"`::(\w+)(?:\[[^\]]*\])?`")


def cited() -> list[tuple[str, str | None]]:
    """Return (file, test) pairs; a bare ``::name`` refers to the file cited before it."""
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text("utf-8").splitlines():
        current = None
        for match in re.finditer(f"{CITED.pattern}|{FOLLOW_UP.pattern}", line):
            if match.group(1):
                current = match.group(1)
                found.append((current, match.group(2)))
            elif current is not None:
                found.append((current, match.group(3)))
    return found


def test_every_cited_test_exists() -> None:
    """Each `tests/file.py::test` in the reliability doc names a real test function."""
    pairs = cited()
    assert len(pairs) > 40
    missing = []
    for path, name in pairs:
        source = ROOT / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []
