"""Withdraw a redacted entry's text from the store, then from the storage under it.

``withdraw`` runs inside the append of the ``redaction`` entry: it records
the redaction and DELETEs the entry's ``contents`` row (body and salt).
A committed DELETE is not yet erasure, so ``scrub`` runs after the commit:

* SQLite: the writer runs with ``secure_delete`` (freed pages are zeroed);
  ``scrub`` checkpoints the WAL into the file and truncates it, so no older
  page image keeps the text either. A busy store delays this; the next
  checkpoint overwrites it.
* PostgreSQL: a DELETE or UPDATE leaves the old row version in the table
  until VACUUM removes it (MVCC), so ``scrub`` runs ``VACUUM`` on every table
  that held the text (contents, rewritten idempotent answers, drafts,
  questions, delivery payloads, the search index). VACUUM cannot remove a
  version that a transaction still open at that moment may see, and it makes
  the space reusable rather than overwriting it at once; the WAL, archived
  WAL and base backups keep the text until they expire. docs/safeguards.md
  says what an operator does about those.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from ..backoff import backoff_delay
from .contract import JobDatabase
from .sqlite import Database

log = logging.getLogger(__name__)
CHECKPOINT_ATTEMPTS = 3
VACUUM_LOCK_TIMEOUT = "5s"
#: Tables whose rows may have held a redacted entry's text (beside ``search_*``).
TEXT_TABLES = ("contents", "idempotency", "drafts", "questions", "deliveries")


def target(conn: Any, incident: str, seq: int) -> tuple[str, str] | None:
    """Return ``(kind, content_hash)`` of entry ``seq``, or None when there is none."""
    row = conn.execute(
        "SELECT kind, record FROM entries WHERE incident = ? AND seq = ?", (incident, seq)
    ).fetchone()
    return (row["kind"], json.loads(row["record"])["content_hash"]) if row else None


def redacted_by(conn: Any, incident: str, seq: int) -> int | None:
    """Return the seq of the redaction entry that withdrew entry ``seq``, if any."""
    row = conn.execute(
        "SELECT redaction_seq FROM redactions WHERE incident = ? AND seq = ?", (incident, seq)
    ).fetchone()
    return int(row[0]) if row else None


def withdraw(
    conn: Any,
    incident: str,
    seq: int,
    content_hash: str,
    *,
    redaction_seq: int,
    basis: str,
    posted_at: str,
    department: str,
) -> None:
    """Record the redaction and delete the entry's body and salt, in the redaction's append."""
    conn.execute(
        "INSERT INTO redactions (incident, seq, redaction_seq, basis, posted_at, department)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (incident, seq, redaction_seq, basis, posted_at, department),
    )
    conn.execute("DELETE FROM contents WHERE content_hash = ?", (content_hash,))


async def scrub(db: JobDatabase) -> None:
    """Erase the old copies of withdrawn text from the storage, after the commit.

    Never raises: the redaction is committed and served already; a failure
    here is logged, and the next checkpoint (SQLite) or autovacuum
    (PostgreSQL) finishes the work.
    """
    if isinstance(db, Database):
        await _scrub_wal(db.path)
        return
    try:
        await db.read(vacuum_text_tables)
    except Exception as exc:  # noqa: BLE001 - logged; the redaction itself stands
        log.warning("VACUUM after a redaction failed: %s", exc)


def vacuum_text_tables(conn: Any) -> list[str]:
    """VACUUM every table that may have held withdrawn text; return their names.

    Needs an autocommit connection (VACUUM refuses to run in a transaction):
    the readers of ``PgDatabase`` are.
    """
    present = {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    }
    tables = [t for t in TEXT_TABLES if t in present]
    tables += sorted(t for t in present if t.startswith("search_"))
    # An autovacuum already working on a table holds the lock VACUUM needs; it
    # removes the same row versions, so waiting long for it gains nothing.
    conn.execute(f"SET lock_timeout = '{VACUUM_LOCK_TIMEOUT}'")
    try:
        for table in tables:
            conn.execute("VACUUM " + '"' + table.replace('"', '""') + '"')
    finally:
        conn.execute("RESET lock_timeout")
    return tables


def truncate_wal(path: Path) -> bool:
    """Checkpoint the WAL into the database and truncate it; True when it completed."""
    conn = sqlite3.connect(path, timeout=2, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)
    finally:
        conn.close()


async def _scrub_wal(path: Path) -> None:
    """Keep trying to truncate the WAL for a short while; a busy store delays it, no more."""
    for failures in range(1, CHECKPOINT_ATTEMPTS + 1):
        try:
            if await asyncio.to_thread(truncate_wal, path):
                return
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint after a redaction failed: %s", exc)
        await asyncio.sleep(backoff_delay(failures, first=0.05, cap=1.0))
    log.warning("WAL still busy after a redaction; the next checkpoint overwrites it")
