"""Copy a single-node SQLite database into an empty PostgreSQL database, in one transaction.

Rows are copied as they are, ids included (identity sequences are then moved
past them), so tokens, webhooks, drafts and deliveries keep their numbers and
nothing that refers to them breaks. Search tables are not copied: their
layout differs between the backends, and the target rebuilds its index from
the entries at its first start. The caller checks every chain before and
after (``broadcaster.cli.migrate``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .pg_conn import PgConnection
from .timeline import incident_dict, read_entries

#: Copied first, in this order, because later tables refer to them.
FIRST = ("incidents", "contents", "entries", "deliveries")
#: Tables that are not data to copy: the search index (rebuilt) and the migrator's own.
NOT_COPIED = ("schema_migrations",)
SEARCH_PREFIX = "search_"


def open_source(path: Path) -> sqlite3.Connection:
    """Open a SQLite data file read-only (safe while nothing writes to it)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def source_tables(conn: sqlite3.Connection) -> list[str]:
    """Return the SQLite tables holding data to copy, in an order that satisfies references."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    data = [n for n in names if not n.startswith(SEARCH_PREFIX) and n not in NOT_COPIED]
    return [n for n in FIRST if n in data] + sorted(n for n in data if n not in FIRST)


def target_tables(conn: PgConnection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ).fetchall()
    return sorted(row[0] for row in rows)


def non_empty_tables(conn: PgConnection) -> list[str]:
    """Return the target's tables that already hold rows (the migrator's own excepted)."""
    found = []
    for name in target_tables(conn):
        if name in NOT_COPIED:
            continue
        if conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0]:
            found.append(name)
    return found


def copy_table(source: sqlite3.Connection, target: PgConnection, name: str) -> int:
    """Copy every row of ``name``; return how many."""
    columns = [row[1] for row in source.execute(f'PRAGMA table_info("{name}")')]
    extra = ["content_hash"] if name == "entries" else []
    listed = ", ".join(f'"{c}"' for c in columns + extra)
    marks = ", ".join("?" for _ in columns + extra)
    insert = f'INSERT INTO "{name}" ({listed}) VALUES ({marks})'
    count = 0
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = source.execute(f'SELECT {quoted} FROM "{name}"')
    while batch := cursor.fetchmany(1000):
        rows = [tuple(row) for row in batch]
        if extra:
            at = columns.index("record")
            rows = [(*row, json.loads(row[at])["content_hash"]) for row in rows]
        target.executemany(insert, rows)
        count += len(rows)
    return count


def move_identities(target: PgConnection) -> None:
    """Set every identity sequence past the largest id copied."""
    rows = target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in rows:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),"
            f' COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)'
        )


def incidents_of(conn: Any) -> list[dict[str, Any]]:
    """Return every incident as the API serves it (either backend)."""
    rows = conn.execute("SELECT * FROM incidents ORDER BY id").fetchall()
    return [incident_dict(row) for row in rows]


def record_of(conn: Any, incident_id: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Return an incident's entries (as served) and its latest checkpoint (either backend)."""
    entries = [entry.to_dict() for entry in read_entries(conn, incident_id)]
    row = conn.execute(
        "SELECT record FROM checkpoints WHERE incident = ? ORDER BY seq DESC LIMIT 1",
        (incident_id,),
    ).fetchone()
    return entries, json.loads(row[0]) if row else None
