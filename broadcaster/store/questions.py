"""Keep the public's questions: asked, answered by an entry, or dismissed with a reason.

Functions of a job's connection (``broadcaster.store.sqlite``), portable SQL
for both backends; what a question may become, and when, is decided by
``broadcaster.questions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: At most this many questions are listed at once, newest first.
LIST_LIMIT = 1000


def insert(conn: Any, question_id: str, incident: str, text: str, asked_at: str) -> None:
    """Store a new pending question."""
    conn.execute(
        "INSERT INTO questions (id, incident, text, asked_at) VALUES (?, ?, ?, ?)",
        (question_id, incident, text, asked_at),
    )


def count_pending(conn: Any, incident: str) -> int:
    """Return how many questions of ``incident`` wait for an answer."""
    row = conn.execute(
        "SELECT COUNT(*) FROM questions WHERE incident = ? AND status = 'pending'", (incident,)
    ).fetchone()
    return int(row[0])


def one(conn: Any, incident: str, question_id: str) -> Mapping[str, Any] | None:
    """Return question ``question_id`` of ``incident``, or None."""
    row: Mapping[str, Any] | None = conn.execute(
        "SELECT * FROM questions WHERE id = ? AND incident = ?", (question_id, incident)
    ).fetchone()
    return row


def listed(conn: Any, incident: str, status: str | None) -> list[Mapping[str, Any]]:
    """Return the newest questions of ``incident``, of one ``status`` when given."""
    sql, args = "SELECT * FROM questions WHERE incident = ?", [incident]
    if status:
        sql, args = sql + " AND status = ?", [*args, status]
    return list(conn.execute(sql + " ORDER BY asked_at DESC LIMIT ?", [*args, LIST_LIMIT]))


def counts(conn: Any, incident: str) -> dict[str, int]:
    """Return how many questions of ``incident`` are in each status that has any."""
    rows = conn.execute(
        "SELECT status, COUNT(*) FROM questions WHERE incident = ? GROUP BY status", (incident,)
    )
    return {status: int(n) for status, n in rows}


def answer_times(conn: Any, incident: str) -> list[tuple[str, str]]:
    """Return ``(asked_at, handled_at)`` of every answered question of ``incident``."""
    rows = conn.execute(
        "SELECT asked_at, handled_at FROM questions WHERE incident = ? AND status = 'answered'",
        (incident,),
    )
    return [(asked, done) for asked, done in rows]


def dismiss(conn: Any, question_id: str, at: str, by: str, reason: str) -> Mapping[str, Any]:
    """Mark a question dismissed, saying by whom (JSON) and why; return it as it is now."""
    row: Mapping[str, Any] = conn.execute(
        "UPDATE questions SET status = 'dismissed', handled_at = ?, handled_by = ?,"
        " reason = ? WHERE id = ? RETURNING *",
        (at, by, reason, question_id),
    ).fetchone()
    return row


def mark_answered(conn: Any, question_id: str, at: str, by: str, seq: int) -> None:
    """Mark a question answered by entry ``seq``, saying by whom (JSON)."""
    conn.execute(
        "UPDATE questions SET status = 'answered', handled_at = ?, handled_by = ?,"
        " answer_seq = ? WHERE id = ?",
        (at, by, seq, question_id),
    )


def erase_answered_text(conn: Any, incident: str, answer_seq: int) -> None:
    """Erase the text of the question that entry ``answer_seq`` answered."""
    conn.execute(
        "UPDATE questions SET text = '' WHERE incident = ? AND answer_seq = ?",
        (incident, answer_seq),
    )
