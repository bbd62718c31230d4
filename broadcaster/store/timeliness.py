"""Read what the timeliness figures need, and remember intervals that entries replaced.

The interval an incident was created with is not in its timeline, so the
append that changes it records the value it replaces (``interval_changes``).
Entry fields are read from the chained record (JSON text) with each
backend's JSON functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .pg_conn import dialect_of

_SLIM_ENTRIES = {
    "sqlite": (
        "SELECT seq, kind, json_extract(record, '$.posted_at') AS posted_at,"
        " json_extract(record, '$.status') AS status,"
        " json_extract(record, '$.update_interval_minutes') AS update_interval_minutes"
        " FROM entries WHERE incident = ? ORDER BY seq"
    ),
    "postgresql": (
        "SELECT seq, kind, r ->> 'posted_at' AS posted_at, r ->> 'status' AS status,"
        " (r ->> 'update_interval_minutes')::integer AS update_interval_minutes"
        " FROM (SELECT seq, kind, record::jsonb AS r FROM entries WHERE incident = ?) e"
        " ORDER BY seq"
    ),
}


def record_interval_change(conn: Any, incident: str, seq: int, before: int | None) -> None:
    """Remember that entry ``seq`` replaced the update interval ``before``."""
    conn.execute(
        "INSERT INTO interval_changes (incident, seq, before) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (incident, seq, before),
    )


def first_interval(conn: Any, incident: str) -> int | None:
    """Return the interval the first change replaced (the one the incident began with)."""
    row = conn.execute(
        "SELECT before FROM interval_changes WHERE incident = ? ORDER BY seq LIMIT 1",
        (incident,),
    ).fetchone()
    return row[0] if row else None


def slim_entries(conn: Any, incident: str) -> list[dict[str, Any]]:
    """Return each entry's seq, kind, posted_at, status and update interval, in order."""
    rows = conn.execute(_SLIM_ENTRIES[dialect_of(conn)], (incident,)).fetchall()
    return [dict(row) for row in rows]


def promising_incidents(conn: Any) -> list[Mapping[str, Any]]:
    """Return the active incidents that promise updates at an interval."""
    return list(
        conn.execute(
            "SELECT * FROM incidents WHERE status = 'active'"
            " AND update_interval_minutes IS NOT NULL"
        ).fetchall()
    )
