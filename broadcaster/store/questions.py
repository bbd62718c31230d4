"""Keep the public's questions: asked, answered by an entry, or dismissed with a reason.

Functions of a job's connection (``broadcaster.store.sqlite``), portable SQL
for both backends; what a question may become, and when, is decided by
``broadcaster.accountability.questions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: At most this many questions are listed at once, newest first.
LIST_LIMIT = 1000


def insert(
    conn: Any,
    question_id: str,
    incident: str,
    text: str,
    asked_at: str,
    source: str = "",
    fingerprint: str = "",
) -> None:
    """Store a new pending question, with who asked it (a source network) and its fingerprint."""
    conn.execute(
        "INSERT INTO questions (id, incident, text, asked_at) VALUES (?, ?, ?, ?)",
        (question_id, incident, text, asked_at),
    )
    conn.execute(
        "INSERT INTO question_sources (id, incident, source, fingerprint) VALUES (?, ?, ?, ?)",
        (question_id, incident, source, fingerprint),
    )


def pending_like(conn: Any, incident: str, fingerprint: str) -> str | None:
    """Return the id of a pending question of ``incident`` with this text fingerprint."""
    row = conn.execute(
        "SELECT s.id FROM question_sources s JOIN questions q ON q.id = s.id"
        " WHERE s.incident = ? AND s.fingerprint = ? AND q.status = 'pending' LIMIT 1",
        (incident, fingerprint),
    ).fetchone()
    return None if row is None else str(row[0])


def fold(conn: Any, question_id: str, incident: str) -> None:
    """Count one more asking of a pending question, and one more folded ask of the incident."""
    conn.execute("UPDATE question_sources SET asks = asks + 1 WHERE id = ?", (question_id,))
    _count_set_aside(conn, incident, "folded")


def turned_away(conn: Any, incident: str) -> None:
    """Count one question the intake rules turned away."""
    _count_set_aside(conn, incident, "turned_away")


def _count_set_aside(conn: Any, incident: str, column: str) -> None:
    # ``column`` is one of two fixed names, never input.
    conn.execute(
        f"INSERT INTO question_intake (incident, {column}) VALUES (?, 1)"
        f" ON CONFLICT (incident) DO UPDATE SET {column} = question_intake.{column} + 1",
        (incident,),
    )


def pending_from(conn: Any, incident: str, source: str) -> int:
    """Return how many questions of ``incident`` from ``source`` wait for an answer."""
    row = conn.execute(
        "SELECT COUNT(*) FROM question_sources s JOIN questions q ON q.id = s.id"
        " WHERE s.incident = ? AND s.source = ? AND q.status = 'pending'",
        (incident, source),
    ).fetchone()
    return int(row[0])


def set_aside(conn: Any, incident: str) -> dict[str, int]:
    """Return how many questions of ``incident`` were folded into others or turned away."""
    row = conn.execute(
        "SELECT folded, turned_away FROM question_intake WHERE incident = ?", (incident,)
    ).fetchone()
    return (
        {"folded": int(row[0]), "turned_away": int(row[1])}
        if row
        else dict.fromkeys(("folded", "turned_away"), 0)
    )


def asks(conn: Any, ids: list[str]) -> dict[str, int]:
    """Return how many times each question was asked (1 unless others were folded into it)."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = conn.execute(f"SELECT id, asks FROM question_sources WHERE id IN ({marks})", ids)
    return {str(qid): int(n) for qid, n in rows}


def forget_source(conn: Any, question_id: str) -> None:
    """Forget who asked a question and its fingerprint (it left the queue)."""
    conn.execute(
        "UPDATE question_sources SET source = '', fingerprint = '' WHERE id = ?", (question_id,)
    )


def pending_rows(conn: Any, incident: str) -> list[Mapping[str, Any]]:
    """Return every pending question of ``incident`` (``id``, ``text``), oldest first."""
    return list(
        conn.execute(
            "SELECT id, text FROM questions WHERE incident = ? AND status = 'pending'"
            " ORDER BY asked_at",
            (incident,),
        )
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
    forget_source(conn, question_id)
    return row


def mark_answered(conn: Any, question_id: str, at: str, by: str, seq: int) -> None:
    """Mark a question answered by entry ``seq``, saying by whom (JSON)."""
    conn.execute(
        "UPDATE questions SET status = 'answered', handled_at = ?, handled_by = ?,"
        " answer_seq = ? WHERE id = ?",
        (at, by, seq, question_id),
    )
    forget_source(conn, question_id)


def erase_answered_text(conn: Any, incident: str, answer_seq: int) -> None:
    """Erase the text of the question that entry ``answer_seq`` answered."""
    conn.execute(
        "UPDATE questions SET text = '' WHERE incident = ? AND answer_seq = ?",
        (incident, answer_seq),
    )
