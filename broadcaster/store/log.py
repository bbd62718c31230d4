"""Keep the site's transparency log: leaves, tile hashes, checkpoints, cosignatures and keys.

Leaves are appended inside the transaction that commits what they log (an
incident's creation, a timeline entry, a key announcement), at index = the
log's current size: writes are serialised site-wide on both backends (one
SQLite writer; PostgreSQL's write lock per group), so two appends can never
take the same index and the log's order is the commit order. Each append also
stores the tile-level hashes it completes (``tiles.stored_hashes_for_append``):
the only hashes the log keeps, and exactly what its tiles serve.

Checkpoints are signed apart from appends (``broadcaster.log.site``), one per
size: a checkpoint body has no time and Ed25519 is deterministic, so every
node signing a size makes the same note and ``ON CONFLICT DO NOTHING`` keeps
one. ``published_at`` is set once the witnesses were asked; ``/log/checkpoint``
serves the largest published one with the cosignatures collected for it.

``signing_keys`` is the history of the site's keys: one row per key with the
period it was in force; the current key has no ``valid_until``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import format_ts, now
from ..errors import ConfigError
from ..log import records
from ..log.merkle import leaf_hash, tree_root
from ..log.tiles import StoredHashes, StoredHashReader, stored_hashes_for_append


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    published: bool


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    public_key: str
    valid_from: str
    valid_until: str | None
    announced_at: int | None


def size(conn: Any) -> int:
    """Return the number of leaves in the log.

    Inside a PostgreSQL write group (``conn.group`` set) the size is read once
    and then kept up to date by ``append_leaves``: the group holds the site's
    write lock, so only its own jobs can add leaves, and the group forgets the
    value whenever a job is rolled back.
    """
    group = getattr(conn, "group", None)
    if group is not None and "log_size" in group:
        return int(group["log_size"])
    row = conn.execute("SELECT MAX(idx) FROM log_leaves").fetchone()
    found = 0 if row[0] is None else int(row[0]) + 1
    if group is not None:
        group["log_size"] = found
    return found


def stored_reader(conn: Any) -> StoredHashes:
    """Return ``read_stored(level, start, end)`` over this connection."""

    def read_stored(level: int, start: int, end: int) -> list[bytes]:
        rows = conn.execute(
            "SELECT hash FROM log_hashes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end),
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    return read_stored


def append_leaves(conn: Any, leaves: Sequence[tuple[str | None, int | None, bytes]]) -> int:
    """Append ``(incident, seq, entry bytes)`` leaves in order; return the first one's index."""
    first = size(conn)
    for offset, (incident, seq, data) in enumerate(leaves):
        conn.execute(
            "INSERT INTO log_leaves (idx, incident, seq, data) VALUES (?, ?, ?, ?)",
            (first + offset, incident, seq, data),
        )
    rows = stored_hashes_for_append(
        first, [leaf_hash(data) for _, _, data in leaves], stored_reader(conn)
    )
    for level, position, digest in rows:
        conn.execute(
            "INSERT INTO log_hashes (level, idx, hash) VALUES (?, ?, ?)", (level, position, digest)
        )
    group = getattr(conn, "group", None)
    if group is not None:
        group["log_size"] = first + len(leaves)
    return first


def log_entry(conn: Any, incident: str, seq: int, entry_hash: str) -> int:
    """Log a timeline entry (inside its append's transaction); return its leaf index."""
    return append_leaves(conn, [(incident, seq, records.incident_leaf(incident, seq, entry_hash))])


def log_creation(conn: Any, incident: str, record: dict[str, Any]) -> int:
    """Keep an incident's creation record and log its seq-0 leaf; return the leaf index."""
    digest = records.creation_hash(record)
    conn.execute(
        "INSERT INTO incident_creations (incident, record, hash) VALUES (?, ?, ?)",
        (incident, json.dumps(record, ensure_ascii=False), digest),
    )
    return append_leaves(conn, [(incident, 0, records.incident_leaf(incident, 0, digest))])


def creation(conn: Any, incident: str) -> dict[str, Any] | None:
    """Return ``{"record", "hash"}`` of an incident's creation, if it was logged."""
    row = conn.execute(
        "SELECT record, hash FROM incident_creations WHERE incident = ?", (incident,)
    ).fetchone()
    return {"record": json.loads(row[0]), "hash": row[1]} if row else None


def leaves(conn: Any, start: int, end: int) -> list[bytes]:
    """Return the entry bytes of leaves ``[start, end)``."""
    rows = conn.execute(
        "SELECT data FROM log_leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def leaves_of(conn: Any, incident: str, below: int) -> list[tuple[int, int, bytes]]:
    """Return ``(index, seq, entry bytes)`` of an incident's leaves under index ``below``."""
    rows = conn.execute(
        "SELECT idx, seq, data FROM log_leaves WHERE incident = ? AND idx < ? ORDER BY idx",
        (incident, below),
    ).fetchall()
    return [(int(row[0]), int(row[1]), bytes(row[2])) for row in rows]


def root(conn: Any, tree_size: int) -> bytes:
    """Return the root hash of the log's first ``tree_size`` leaves, from stored hashes."""
    return tree_root(StoredHashReader(stored_reader(conn)), tree_size)


def insert_checkpoint(
    conn: Any, tree_size: int, root_hash: bytes, note: str, *, published: bool
) -> None:
    """Keep a signed checkpoint; the first note for a size wins (they are all equal)."""
    at = format_ts(now())
    conn.execute(
        "INSERT INTO log_checkpoints (size, root, note, signed_at, published_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (tree_size, root_hash, note, at, at if published else None),
    )


def publish(conn: Any, tree_size: int) -> None:
    """Mark a checkpoint as served (its witnesses were asked)."""
    conn.execute(
        "UPDATE log_checkpoints SET published_at = ? WHERE size = ? AND published_at IS NULL",
        (format_ts(now()), tree_size),
    )


def latest_checkpoint(conn: Any, *, published: bool) -> SignedCheckpoint | None:
    """Return the largest checkpoint (only among published ones if ``published``)."""
    where = " WHERE published_at IS NOT NULL" if published else ""
    row = conn.execute(
        "SELECT size, root, note, published_at FROM log_checkpoints"
        + where
        + " ORDER BY size DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return SignedCheckpoint(int(row[0]), bytes(row[1]), row[2], row[3] is not None)


def add_cosignature(conn: Any, tree_size: int, witness: str, line: str) -> None:
    """Keep a witness's verified cosignature line for the checkpoint of ``tree_size``."""
    conn.execute(
        "INSERT INTO log_cosignatures (size, witness, line, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (tree_size, witness, line, format_ts(now())),
    )


def cosignatures(conn: Any, tree_size: int) -> list[str]:
    """Return the cosignature lines collected for the checkpoint of ``tree_size``."""
    rows = conn.execute(
        "SELECT line FROM log_cosignatures WHERE size = ? ORDER BY witness", (tree_size,)
    ).fetchall()
    return [row[0] for row in rows]


def cosigned_sizes(conn: Any) -> dict[str, int]:
    """Return the largest size each witness cosigned, by witness name."""
    rows = conn.execute(
        "SELECT witness, MAX(size) FROM log_cosignatures GROUP BY witness"
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def key_rows(conn: Any) -> list[KeyRow]:
    """Return every key the site has used, oldest first."""
    rows = conn.execute(
        "SELECT key_id, public_key, valid_from, valid_until, announced_at FROM signing_keys"
        " ORDER BY valid_from, key_id"
    ).fetchall()
    return [KeyRow(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4])) for r in rows]


def prepare(conn: Any, key_id: str, public_key: str, latest_key_id: str | None) -> None:
    """Check this node's key against the key history, seed it, and build a missing log.

    Runs once per start in one write job. The first start of this version
    records the node's key as the site's first key (refusing it if the store's
    checkpoints were signed by another one), and logs what the store holds
    when it has incidents but no log: an installation from before the log, or
    a copy made by ``broadcaster migrate`` of one.
    """
    keys = key_rows(conn)
    current = [k for k in keys if k.valid_until is None]
    if not keys:
        if latest_key_id is not None and latest_key_id != key_id:
            raise ConfigError(
                f"this node signs with key {key_id} but the store's latest checkpoint was signed"
                f" with {latest_key_id}: give every node the site's BROADCASTER_SIGNING_KEY"
            )
        conn.execute(
            "INSERT INTO signing_keys (key_id, public_key, valid_from) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (key_id, public_key, format_ts(now())),
        )
    elif not current or current[-1].key_id != key_id:
        known = {k.key_id: k for k in keys}
        what = (
            f"was retired on {known[key_id].valid_until}"
            if key_id in known
            else "is not in the site's key history"
        )
        in_force = current[-1].key_id if current else "none"
        raise ConfigError(
            f"this node's signing key {key_id} {what}; the key in force is {in_force}"
            " (see 'broadcaster key rotate'): give every node the site's current key"
        )
    if size(conn) == 0 and conn.execute("SELECT 1 FROM incidents LIMIT 1").fetchone():
        build_from_timelines(conn)


def build_from_timelines(conn: Any) -> int:
    """Log every incident's creation and entry, in commit order; return the leaf count.

    Commit order is reconstructed from timestamps: an incident's creation at
    its ``created_at``, an entry at its ``posted_at``; at equal times a
    creation comes first, then entries by incident and seq (a timeline's own
    order is always kept, since its ``posted_at`` never decreases).
    """
    events: list[tuple[str, int, str, int, bytes]] = []
    for row in conn.execute("SELECT * FROM incidents").fetchall():
        fields = dict(zip(row.keys(), tuple(row), strict=True))
        fields["created_by"] = json.loads(fields["created_by"])
        record = records.creation_record(row["id"], fields)
        digest = records.creation_hash(record)
        conn.execute(
            "INSERT INTO incident_creations (incident, record, hash) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (row["id"], json.dumps(record, ensure_ascii=False), digest),
        )
        stored = creation(conn, row["id"])
        assert stored is not None
        leaf = records.incident_leaf(row["id"], 0, stored["hash"])
        events.append((row["created_at"], 0, row["id"], 0, leaf))
    for incident, seq, entry_hash, record in conn.execute(
        "SELECT incident, seq, hash, record FROM entries"
    ).fetchall():
        posted_at = json.loads(record)["posted_at"]
        leaf = records.incident_leaf(incident, int(seq), entry_hash)
        events.append((posted_at, 1, incident, int(seq), leaf))
    events.sort(key=lambda e: e[:4])
    if events:
        append_leaves(conn, [(incident, seq, leaf) for _, _, incident, seq, leaf in events])
    return len(events)


def rotate_key(
    conn: Any,
    old_key_id: str,
    new_key_id: str,
    new_public_key: str,
    valid_from: str,
    announcement: bytes,
) -> int:
    """Retire the current key, record the new one and log its announcement; return the index."""
    current = [k for k in key_rows(conn) if k.valid_until is None]
    if not current or current[-1].key_id != old_key_id:
        raise ConfigError(f"key {old_key_id} is not the site's current key: nothing rotated")
    index = append_leaves(conn, [(None, None, announcement)])
    conn.execute(
        "UPDATE signing_keys SET valid_until = ? WHERE key_id = ?", (valid_from, old_key_id)
    )
    conn.execute(
        "INSERT INTO signing_keys (key_id, public_key, valid_from, announced_at)"
        " VALUES (?, ?, ?, ?)",
        (new_key_id, new_public_key, valid_from, index),
    )
    return index
