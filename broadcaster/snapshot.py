"""Put a whole SQLite database at the start of the shared log, and restore it from there.

``broadcaster migrate-redis`` copies a single-node database into an empty log
as a snapshot: a consistent copy made with SQLite's backup API (page for
page, so rowids, FTS5 indexes and ``AUTOINCREMENT`` counters stay exactly as
they were), cut into parts of ``PART_BYTES`` and appended as consecutive
entries, each fenced on the previous one. A new replica whose log starts
with a snapshot writes the parts to its file, checks the SHA-256 that every
part carries, and applies the statements after the last part as usual, so
every replica starts from the same bytes and replays to the same state.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import tempfile
from pathlib import Path

from .errors import ConfigError
from .wal import ORIGIN, Log, LogEntry

PART_BYTES = 8 * 1024 * 1024


def copy_database(source: Path, target: Path) -> None:
    """Write a consistent copy of ``source`` to ``target`` (SQLite's online backup)."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        # One self-contained file: a replica opens it in WAL mode itself.
        dst.execute("PRAGMA journal_mode=DELETE")
        # A replica's position in its old log means nothing in the new one.
        dst.execute("DROP TABLE IF EXISTS wal_state")
    finally:
        dst.close()
        src.close()


def append_snapshot(log: Log, source: Path) -> tuple[str, int]:
    """Append ``source`` as the log's first entries; return ``(last id, bytes)``.

    Refuses (``ConfigError``) unless the log is empty: a snapshot after other
    entries would overwrite what they wrote on every new replica.
    """
    if log.head() != ORIGIN or log.length():
        raise ConfigError("the shared log in Redis is not empty; migrate into an empty one")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "snapshot.db"
        copy_database(source, copy)
        data = copy.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
    head = ORIGIN
    for i, part in enumerate(parts, 1):
        fields: dict[str, bytes | str] = {
            "g": secrets.token_hex(8),
            "s": f"{i}/{len(parts)}",
            "h": digest,
            "b": part,
        }
        head = log.append(head, fields)
    return head, len(data)


def restore(log: Log, first: LogEntry, target: Path, state_schema: str, identity: str) -> str:
    """Write the snapshot that starts the log to ``target``; return its last part's id.

    The file appears whole or not at all, already marked as a replica of
    ``identity`` at the snapshot's position (``state_schema``'s table).
    """
    part = first.snapshot_part
    if part is None:
        raise ValueError("the first entry of the log is not a snapshot")
    total = part[1]
    entries = [first] + (log.read(first.id, total - 1) if total > 1 else [])
    found = [e.snapshot_part for e in entries]
    if found != [(i, total) for i in range(1, total + 1)]:
        raise ConfigError(f"the snapshot at the start of the log is incomplete: {found}")
    data = b"".join(e.fields[b"b"] for e in entries)
    if hashlib.sha256(data).hexdigest() != first.fields[b"h"].decode():
        raise ConfigError("the snapshot at the start of the log does not match its checksum")
    partial = target.with_name(target.name + ".restoring")
    partial.write_bytes(data)
    conn = sqlite3.connect(partial)
    try:
        with conn:
            conn.execute(state_schema)
            conn.execute(
                "INSERT INTO wal_state (id, log, applied) VALUES (1, ?, ?)",
                (identity, entries[-1].id),
            )
    finally:
        conn.close()
    partial.replace(target)
    return entries[-1].id
