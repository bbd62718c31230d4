"""Read the key figures entries carried, leaving out redacted entries.

Figures live inside each entry's chained record (JSON text), so reading them
needs the backend's JSON functions: SQLite's ``json_extract``, PostgreSQL's
``jsonb`` operators (``->>`` yields SQL NULL for a JSON null, as
``json_extract`` does).
"""

from __future__ import annotations

import json
from typing import Any

from .pg_conn import dialect_of

_UNREDACTED = (
    " AND NOT EXISTS (SELECT 1 FROM redactions r WHERE r.incident = e.incident AND r.seq = e.seq)"
)
_POINTS = {
    "sqlite": (
        "SELECT e.seq, json_extract(e.record, '$.posted_at'), json_extract(e.record, '$.figures')"
        " FROM entries e WHERE e.incident = ? AND json_extract(e.record, '$.figures') IS NOT NULL"
    ),
    "postgresql": (
        "SELECT e.seq, e.record::jsonb ->> 'posted_at', e.record::jsonb ->> 'figures'"
        " FROM entries e WHERE e.incident = ? AND e.record::jsonb ->> 'figures' IS NOT NULL"
    ),
}
_CURRENT = {
    "sqlite": (
        "SELECT json_extract(e.record, :path) AS value, e.seq FROM entries e"
        " WHERE e.incident = :incident AND json_extract(e.record, :path) IS NOT NULL"
    ),
    "postgresql": (
        "SELECT e.record::jsonb -> 'figures' ->> :key AS value, e.seq FROM entries e"
        " WHERE e.incident = :incident AND e.record::jsonb -> 'figures' ->> :key IS NOT NULL"
    ),
}


def points(conn: Any, incident: str) -> list[tuple[int, str, dict[str, int]]]:
    """Return ``(seq, posted_at, figures)`` of unredacted entries carrying figures, in order."""
    rows = conn.execute(
        _POINTS[dialect_of(conn)] + _UNREDACTED + " ORDER BY e.seq", (incident,)
    ).fetchall()
    return [(int(seq), posted_at, json.loads(figures)) for seq, posted_at, figures in rows]


def current(conn: Any, incident: str, key: str) -> tuple[int, int] | None:
    """Return ``(value, seq)`` of figure ``key`` in the latest unredacted entry carrying it."""
    params = {"incident": incident, "key": key, "path": f'$.figures."{key}"'}
    row = conn.execute(
        _CURRENT[dialect_of(conn)] + _UNREDACTED + " ORDER BY e.seq DESC LIMIT 1", params
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None
