"""Read what area feeds and pages show: the entries of the incidents reaching an area.

Apart from ``broadcaster.store.areas`` because ``store.timeline`` (which this
reads through) needs that module when it creates an incident.
"""

from __future__ import annotations

from typing import Any

from ..timeline.model import Entry
from .pg_conn import dialect_of
from .timeline import entry_from_row, entry_select


def latest_entries_in(conn: Any, code: str, limit: int) -> list[Entry]:
    """Return the newest ``limit`` entries of the incidents reaching area ``code``, newest first."""
    posted_at = "json_extract(e.record, '$.posted_at')"
    if dialect_of(conn) == "postgresql":
        # Bytewise order, as SQLite compares text.
        posted_at = "(e.record::jsonb ->> 'posted_at') COLLATE \"C\""
    rows = conn.execute(
        f"{entry_select(conn)} WHERE e.incident IN (SELECT incident FROM incident_areas"
        " WHERE area IN (SELECT area FROM area_paths WHERE ancestor = :code"
        " UNION SELECT ancestor FROM area_paths WHERE area = :code))"
        f" ORDER BY {posted_at} DESC, e.seq DESC LIMIT :limit",
        {"code": code, "limit": limit},
    ).fetchall()
    return [entry_from_row(row) for row in rows]
