"""Read one incident's whole record in one consistent snapshot, for ``broadcaster export``.

The incident, its entries and its checkpoints are read inside one read-only
transaction on a reader connection, so a write committing meanwhile (an
append, a redaction) is either wholly in the archive or not at all, and the
head, the last entry and the last checkpoint agree. SQLite: ``BEGIN`` on the
read connection (its snapshot starts at the first read). PostgreSQL:
``REPEATABLE READ READ ONLY``, one snapshot for every statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..model import Entry
from .pg_conn import dialect_of
from .timeline import incident_dict, read_entries

_BEGIN = {
    "sqlite": "BEGIN",
    "postgresql": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
}


@dataclass(frozen=True)
class Record:
    """An incident as served, every entry (redacted ones without text) and every checkpoint."""

    incident: dict[str, Any]
    entries: list[Entry]
    checkpoints: list[dict[str, Any]]


def read_record(conn: Any, incident_id: str) -> Record | None:
    """Return incident ``incident_id``'s record from one snapshot, or None when it is unknown.

    ``conn`` is a reader connection outside any transaction (``db.read``).
    """
    conn.execute(_BEGIN[dialect_of(conn)])
    try:
        row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            return None
        entries = read_entries(conn, incident_id)
        checkpoints = [
            json.loads(record)
            for (record,) in conn.execute(
                "SELECT record FROM checkpoints WHERE incident = ? ORDER BY seq", (incident_id,)
            ).fetchall()
        ]
        return Record(incident_dict(row), entries, checkpoints)
    finally:
        conn.execute("COMMIT")
