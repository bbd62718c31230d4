"""Keep drafts waiting for a second person: held, approved into an entry, or rejected.

Functions of a job's connection (``broadcaster.store.sqlite``); who may do
what to a draft is decided by ``broadcaster.timeline.drafts``. ``n`` orders drafts in
the order they were held.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .pg_conn import dialect_of

#: Empties the draft's copy of an entry's body; the JSON function differs per backend.
_ERASE_BODY = {
    "sqlite": "json_set(entry, '$.body', '')",
    "postgresql": "jsonb_set(entry::jsonb, '{body}', '\"\"')::text",
}


def incident(conn: Any, incident_id: str) -> Mapping[str, Any] | None:
    """Return the row of the incident a draft is held for (its head included), or None."""
    row: Mapping[str, Any] | None = conn.execute(
        "SELECT * FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return row


def insert(
    conn: Any,
    draft_id: str,
    incident: str,
    created_at: str,
    author: tuple[str, str, int | None],
    entry: str,
    review: str,
) -> None:
    """Store a pending draft; ``author`` is (name, department, token id); entry and review JSON."""
    conn.execute(
        "INSERT INTO drafts (id, incident, status, created_at, author_name,"
        " author_department, author_token, entry, review)"
        " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
        (draft_id, incident, created_at, *author, entry, review),
    )


def one(conn: Any, draft_id: str) -> Mapping[str, Any] | None:
    """Return draft ``draft_id``, or None."""
    row: Mapping[str, Any] | None = conn.execute(
        "SELECT * FROM drafts WHERE id = ?", (draft_id,)
    ).fetchone()
    return row


def listed(
    conn: Any,
    *,
    status: str | None,
    incident: str | None,
    author: tuple[int | None, str, str] | None,
    limit: int,
) -> list[Mapping[str, Any]]:
    """Return drafts, pending ones oldest first (a queue), others newest first.

    ``status`` and ``incident`` filter when given; ``author`` (token id, name,
    department) keeps only that person's drafts: the same token, or the same
    name and department.
    """
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if incident is not None:
        where.append("incident = ?")
        params.append(incident)
    if author is not None:
        where.append("(author_token = ? OR (author_name = ? AND author_department = ?))")
        params.extend(author)
    clause = " WHERE " + " AND ".join(where) if where else ""
    order = "ASC" if status == "pending" else "DESC"
    return list(
        conn.execute(
            f"SELECT * FROM drafts{clause} ORDER BY n {order} LIMIT ?", (*params, limit)
        ).fetchall()
    )


def approve(conn: Any, draft_id: str, at: str, by: str, seq: int) -> None:
    """Mark a draft approved by ``by`` (JSON) and published as entry ``seq``."""
    conn.execute(
        "UPDATE drafts SET status = 'approved', decided_at = ?, decided_by = ?, seq = ?"
        " WHERE id = ?",
        (at, by, seq, draft_id),
    )


def reject(conn: Any, draft_id: str, at: str, by: str, reason: str) -> Mapping[str, Any]:
    """Mark a draft rejected by ``by`` (JSON), saying why; return it as it is now."""
    row: Mapping[str, Any] = conn.execute(
        "UPDATE drafts SET status = 'rejected', decided_at = ?, decided_by = ?, reason = ?"
        " WHERE id = ? RETURNING *",
        (at, by, reason, draft_id),
    ).fetchone()
    return row


def erase_body(conn: Any, incident: str, seq: int) -> None:
    """Erase the body kept in the draft that became entry ``seq``, and flag it redacted."""
    conn.execute(
        f"UPDATE drafts SET entry = {_ERASE_BODY[dialect_of(conn)]}, redacted = 1"
        " WHERE incident = ? AND seq = ?",
        (incident, seq),
    )
