"""Read what the pages and feeds show, in one read job per request.

Every function here is a plain ``fn(conn, ...)`` run on a reader thread by
``Database.read``; they return ``Entry`` objects (with redactions already
applied by ``entry_from_row``) or plain dicts, never rows, so templates cannot
reach the database. Entries are read by cursor (``seq``) only, never by
offset, so a page never shifts when new entries arrive.

The two backends differ only in how a member of the stored record is read
(``json_extract`` on SQLite, ``->>`` on PostgreSQL, where a JSON ``null``
reads as SQL ``NULL`` on both) and in how "no limit" is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..timeline.model import STATE_FIELDS, Entry
from .pg_conn import dialect_of
from .timeline import (
    corrections_after,
    entry_from_row,
    entry_select,
    incident_dict,
    no_limit,
    with_corrections,
)


def _member(conn: Any, column: str, name: str) -> str:
    """Return the SQL reading member ``name`` of the JSON text in ``column``, as text."""
    if dialect_of(conn) == "postgresql":
        return f"({column}::jsonb ->> '{name}')"
    return f"json_extract({column}, '$.{name}')"


def _key(conn: Any) -> str:
    """Return the condition of key events.

    The first entry, status changes, corrections, redactions and every entry
    that moves a key figure. Editors have no "pin" flag in the contract, so
    this is derived from what the entry is.
    """
    return (
        "(e.seq = 1 OR e.kind IN ('status', 'correction', 'redaction')"
        f" OR {_member(conn, 'e.record', 'figures')} IS NOT NULL)"
    )


@dataclass
class Slice:
    """One page of a timeline plus what is needed to link around it."""

    entries: list[Entry]
    head_seq: int
    has_older: bool = False
    has_newer: bool = False
    total: int = 0


@dataclass
class Facts:
    """Everything about an incident's timeline that is not one page of entries."""

    figures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    corrected_by: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    key_events: list[Entry] = field(default_factory=list)
    first_posted_at: str | None = None


def entries_where(
    conn: Any,
    incident_id: str,
    where: str,
    args: tuple[Any, ...],
    order: str,
    limit: int | None = None,
) -> list[Entry]:
    """Return an incident's entries matching ``where``, by ``seq`` in ``order``."""
    rows = conn.execute(
        f"{entry_select(conn)} WHERE e.incident = ? AND {where} ORDER BY e.seq {order} LIMIT ?",
        (incident_id, *args, no_limit(conn) if limit is None else limit),
    ).fetchall()
    return with_corrections(conn, [entry_from_row(row) for row in rows])


def timeline_slice(
    conn: Any,
    incident_id: str,
    head_seq: int,
    *,
    newest_first: bool,
    cursor: int | None,
    key_only: bool,
    limit: int,
) -> Slice:
    """Return up to ``limit`` entries before (newest first) or after (oldest first) ``cursor``.

    ``cursor`` is exclusive: ``before`` for newest-first pages, ``after`` for
    oldest-first ones; ``None`` means the latest (or the first) page.
    """
    key = f" AND {_key(conn)}" if key_only else ""
    if newest_first:
        bound = head_seq + 1 if cursor is None else cursor
        entries = entries_where(conn, incident_id, f"e.seq < ?{key}", (bound,), "DESC", limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        newer = bool(entries) and entries[0].seq < head_seq and cursor is not None
        result = Slice(entries, head_seq, has_older=more, has_newer=newer)
    else:
        bound = 0 if cursor is None else cursor
        entries = entries_where(conn, incident_id, f"e.seq > ?{key}", (bound,), "ASC", limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        result = Slice(entries, head_seq, has_older=bound > 0, has_newer=more)
    if key_only:
        result.total = conn.execute(
            f"SELECT COUNT(*) FROM entries e WHERE e.incident = ? AND {_key(conn)}",
            (incident_id,),
        ).fetchone()[0]
    else:
        result.total = head_seq
    return result


def timeline_facts(conn: Any, incident_id: str, key_events: int = 8) -> Facts:
    """Return figure histories, correction links and the latest key events."""
    facts = Facts()
    rows = conn.execute(
        "SELECT seq, kind, record FROM entries WHERE incident = ?"
        f" AND (kind = 'correction' OR {_member(conn, 'record', 'figures')} IS NOT NULL"
        " OR seq = 1) ORDER BY seq",
        (incident_id,),
    ).fetchall()
    for row in rows:
        record = json.loads(row["record"])
        if row["seq"] == 1:
            facts.first_posted_at = record["posted_at"]
        if record.get("corrects") is not None:
            facts.corrected_by.setdefault(record["corrects"], []).append(
                {"seq": row["seq"], "posted_at": record["posted_at"]}
            )
        for name, value in (record.get("figures") or {}).items():
            facts.figures.setdefault(name, []).append(
                {
                    "seq": row["seq"],
                    "value": value,
                    "posted_at": record["posted_at"],
                    "kind": row["kind"],
                }
            )
    facts.key_events = entries_where(conn, incident_id, _key(conn), (), "DESC", key_events)
    return facts


def entries_by_seq(conn: Any, incident_id: str, seqs: list[int]) -> list[Entry]:
    """Return the named entries, in the order named (those that exist)."""
    if not seqs:
        return []
    marks = ",".join("?" * len(seqs))
    found = {
        e.seq: e
        for e in entries_where(conn, incident_id, f"e.seq IN ({marks})", tuple(seqs), "ASC")
    }
    return [found[seq] for seq in seqs if seq in found]


def neighbours(conn: Any, incident_id: str, seq: int) -> list[Entry]:
    """Return the entries ``seq - 1 .. seq + 1`` that exist, in order."""
    return entries_where(conn, incident_id, "e.seq BETWEEN ? AND ?", (seq - 1, seq + 1), "ASC")


def latest_entries(conn: Any, incident_id: str, limit: int) -> list[Entry]:
    """Return the newest ``limit`` entries, newest first."""
    return entries_where(conn, incident_id, "TRUE", (), "DESC", limit)


def latest_across(conn: Any, limit: int) -> list[Entry]:
    """Return the newest ``limit`` entries of all incidents, newest first."""
    # Bytewise order (``COLLATE "C"`` on PostgreSQL), as SQLite compares text.
    posted_at = _member(conn, "e.record", "posted_at")
    if dialect_of(conn) == "postgresql":
        posted_at += ' COLLATE "C"'
    rows = conn.execute(
        f"{entry_select(conn)} ORDER BY {posted_at} DESC, e.seq DESC LIMIT ?", (limit,)
    ).fetchall()
    return with_corrections(conn, [entry_from_row(row) for row in rows])


def redactions(conn: Any, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """Return ``{(incident, seq): {"seq", "posted_at", "basis"}}`` for redacted entries.

    ``seq`` is the redaction entry's own seq, the shape the feed renderer wants.
    """
    found: dict[tuple[str, int], Any] = {}
    for incident_id, seq in keys:
        row = conn.execute(
            "SELECT redaction_seq, posted_at, basis, department FROM redactions"
            " WHERE incident = ? AND seq = ?",
            (incident_id, seq),
        ).fetchone()
        if row is not None:
            found[(incident_id, seq)] = {
                "seq": row["redaction_seq"],
                "posted_at": row["posted_at"],
                "basis": row["basis"],
                "department": row["department"],
            }
    return found


def head(conn: Any, incident_id: str) -> tuple[int, str] | None:
    """Return an incident's head ``(seq, hash)``, or ``None`` if there is no such incident."""
    row = conn.execute(
        "SELECT head_seq, head_hash FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def heads(conn: Any) -> list[tuple[str, int, str]]:
    """Return every incident's ``(id, head seq, head hash)``."""
    rows = conn.execute("SELECT id, head_seq, head_hash FROM incidents").fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def incidents_by_id(conn: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the named incidents as the API serves them, keyed by id."""
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT * FROM incidents WHERE id IN ({','.join('?' * len(ids))})", ids
    ).fetchall()
    return {row["id"]: incident_dict(row) for row in rows}


def state_at(conn: Any, incident_id: str, seq: int) -> dict[str, Any]:
    """Return the incident state (severity, advice, summary, area, status) as of entry ``seq``.

    The state at creation, then every status entry up to ``seq`` applied in order.
    """
    row = conn.execute("SELECT initial FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    state: dict[str, Any] = json.loads(row[0]) if row and row[0] else {}
    state.setdefault("status", "active")
    rows = conn.execute(
        "SELECT record FROM entries WHERE incident = ? AND kind = 'status' AND seq <= ?"
        " ORDER BY seq",
        (incident_id, seq),
    ).fetchall()
    for found in rows:
        record = json.loads(found[0])
        state.update({k: record[k] for k in STATE_FIELDS if record.get(k) is not None})
    return state


def corrections_for(conn: Any, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[int]]:
    """Return ``{(incident, seq): [correction seqs]}`` for the entries named that were corrected."""
    found = corrections_after(conn, keys)
    return {key: found[key] for key in keys if key in found}
