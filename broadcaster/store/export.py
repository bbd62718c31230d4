"""Read one incident's whole record in one consistent snapshot, for ``broadcaster export``.

The incident, its entries, its checkpoints, its creation record, the log's
latest published checkpoint with its cosignatures, an inclusion proof for
each of the incident's leaves in that checkpoint's tree, and the site's key
history are read inside one read-only
transaction on a reader connection, so a write committing meanwhile (an
append, a redaction) is either wholly in the archive or not at all, and the
head, the last entry and the last checkpoint agree. SQLite: ``BEGIN`` on the
read connection (its snapshot starts at the first read). PostgreSQL:
``REPEATABLE READ READ ONLY``, one snapshot for every statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..log.merkle import inclusion_proof
from ..log.note import append_signatures
from ..log.tiles import StoredHashReader
from ..timeline.model import Entry
from . import log as log_store
from .pg_conn import dialect_of
from .timeline import incident_dict, read_entries

_BEGIN = {
    "sqlite": "BEGIN",
    "postgresql": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
}


@dataclass(frozen=True)
class Record:
    """An incident as served, every entry (redacted ones without text) and every checkpoint."""

    incident: dict[str, Any]
    entries: list[Entry]
    checkpoints: list[dict[str, Any]]
    keys: list[log_store.KeyRow]
    log_checkpoint: str | None
    #: ``(leaf index, seq, entry bytes, audit path)`` of the incident's leaves in that tree.
    leaves: list[tuple[int, int, bytes, list[bytes]]]


def read_record(conn: Any, incident_id: str) -> Record | None:
    """Return incident ``incident_id``'s record from one snapshot, or None when it is unknown.

    ``conn`` is a reader connection outside any transaction (``db.read``).
    """
    conn.execute(_BEGIN[dialect_of(conn)])
    try:
        row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            return None
        entries = read_entries(conn, incident_id)
        checkpoints = [
            json.loads(record)
            for (record,) in conn.execute(
                "SELECT record FROM checkpoints WHERE incident = ? ORDER BY seq", (incident_id,)
            ).fetchall()
        ]
        incident = {**incident_dict(row), "creation": log_store.creation(conn, incident_id)}
        signed = log_store.latest_checkpoint(conn, published=True)
        leaves = []
        note = None
        if signed is not None:
            note = append_signatures(signed.note, log_store.cosignatures(conn, signed.size))
            reader = StoredHashReader(log_store.stored_reader(conn))
            for index, seq, data in log_store.leaves_of(conn, incident_id, signed.size):
                leaves.append((index, seq, data, inclusion_proof(reader, index, signed.size)))
        keys = log_store.key_rows(conn)
        return Record(incident, entries, checkpoints, keys, note, leaves)
    finally:
        conn.execute("COMMIT")
