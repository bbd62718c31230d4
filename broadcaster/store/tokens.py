"""Keep bearer tokens (their hashes only) and the stored answers of keyed POSTs.

Every function is a piece of a job (``broadcaster.store.sqlite``): it takes
the job's connection and runs inside the caller's transaction, so a check and
the write that depends on it stay one atomic step. The SQL is portable; it
runs unchanged on SQLite and PostgreSQL.

Idempotent answers live here because they are keyed by the token that sent
the request: ``(token_id, key)`` names one answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: The columns a token is served with: never its hash.
COLUMNS = "id, name, department, role, created_at, revoked_at"


def insert(conn: Any, name: str, department: str, role: str, token_hash: str, at: str) -> int:
    """Store a new token's hash and return its id."""
    row = conn.execute(
        "INSERT INTO tokens (name, department, role, token_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (name, department, role, token_hash, at),
    ).fetchone()
    return int(row[0])


def count(conn: Any) -> int:
    """Return how many tokens were ever made, revoked ones included."""
    return int(conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])


def count_active_admins(conn: Any) -> int:
    """Return how many admin tokens still work."""
    row = conn.execute(
        "SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND revoked_at IS NULL"
    ).fetchone()
    return int(row[0])


def active_by_hash(conn: Any, token_hash: str) -> Mapping[str, Any] | None:
    """Return the unrevoked token with this hash (``token_hash`` included), or None."""
    row: Mapping[str, Any] | None = conn.execute(
        "SELECT id, name, department, role, token_hash FROM tokens"
        " WHERE token_hash = ? AND revoked_at IS NULL",
        (token_hash,),
    ).fetchone()
    return row


def one(conn: Any, token_id: int) -> Mapping[str, Any] | None:
    """Return token ``token_id`` without its hash, or None."""
    row: Mapping[str, Any] | None = conn.execute(
        f"SELECT {COLUMNS} FROM tokens WHERE id = ?", (token_id,)
    ).fetchone()
    return row


def every(conn: Any) -> list[Mapping[str, Any]]:
    """Return every token without its hash, newest first."""
    return list(conn.execute(f"SELECT {COLUMNS} FROM tokens ORDER BY id DESC").fetchall())


def revoke(conn: Any, token_id: int, at: str) -> bool:
    """Mark the token revoked at ``at``; False when it was unknown or revoked already."""
    cur = conn.execute(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, token_id)
    )
    return bool(cur.rowcount == 1)


# -- answers to POSTs sent with an Idempotency-Key ------------------------------------------


def answer(conn: Any, token_id: int, key: str) -> Mapping[str, Any] | None:
    """Return ``fingerprint``, ``status`` and ``body`` stored for ``(token_id, key)``, or None."""
    row: Mapping[str, Any] | None = conn.execute(
        "SELECT fingerprint, status, body FROM idempotency WHERE token_id = ? AND key = ?",
        (token_id, key),
    ).fetchone()
    return row


def remember(
    conn: Any, token_id: int, key: str, fingerprint: str, status: int, body: str, at: str
) -> None:
    """Store the answer given to ``(token_id, key)`` so a replay gets it again."""
    conn.execute(
        "INSERT INTO idempotency (token_id, key, fingerprint, status, body, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (token_id, key, fingerprint, status, body, at),
    )


def rewrite_entry_answers(conn: Any, incident_id: str, seq: int, body: str) -> None:
    """Replace every stored 201 answer that served entry ``seq`` with ``body``.

    The answers are entries as JSON; LIKE only narrows the scan (a body naming
    the incident), the decision is taken on the parsed JSON, so the same
    statement serves both backends without casting text that may not be JSON.
    """
    needle = json.dumps(incident_id, ensure_ascii=False)
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(
        "SELECT token_id, key, body FROM idempotency WHERE status = 201"
        " AND body LIKE ? ESCAPE '\\'",
        (pattern,),
    ).fetchall()
    for row in rows:
        try:
            stored = json.loads(row["body"])
        except ValueError:
            continue
        served = (stored.get("incident"), stored.get("seq")) if isinstance(stored, dict) else None
        if served == (incident_id, seq):
            conn.execute(
                "UPDATE idempotency SET body = ? WHERE token_id = ? AND key = ?",
                (body, row["token_id"], row["key"]),
            )
