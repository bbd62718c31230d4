"""Keep a witness's state: the latest checkpoint it cosigned per origin, and the evidence.

The witness's own small SQLite file (``witness.db`` in its data directory),
separate from any site's store: a witness is run by someone else, on another
machine. ``transaction()`` is one ``BEGIN IMMEDIATE`` transaction, so checking
a new checkpoint against the latest and recording it are one atomic step even
if two witness processes share the directory (C2SP tlog-witness requires it:
otherwise two requests could roll the recorded size back).

Evidence rows are every validly signed checkpoint the witness refused as
inconsistent (a fork, a rollback, a bad proof), with the request that carried
it, kept once per (origin, size, root hash).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    reason TEXT NOT NULL,
    request TEXT NOT NULL,
    latest_size INTEGER NOT NULL,
    latest_root BLOB,
    received_at INTEGER NOT NULL,
    UNIQUE (origin, size, root_hash)
);
"""


@dataclass(frozen=True)
class Cosigned:
    """The latest checkpoint cosigned for an origin, as a note with the log's and our signatures."""

    origin: str
    size: int
    root_hash: bytes
    note: str
    cosigned_at: int


@dataclass(frozen=True)
class Evidence:
    """A validly signed checkpoint the witness refused, with what it had cosigned before."""

    origin: str
    size: int
    root_hash: bytes
    reason: str
    request: str
    latest_size: int
    latest_root: bytes | None
    received_at: int


class Transaction:
    """Read and write one origin's state inside an open write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def latest(self, origin: str) -> Cosigned | None:
        return _latest(self._conn, origin)

    def save(self, cosigned: Cosigned) -> None:
        self._conn.execute(
            "INSERT INTO cosigned (origin, size, root_hash, note, cosigned_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET size = excluded.size,"
            " root_hash = excluded.root_hash, note = excluded.note,"
            " cosigned_at = excluded.cosigned_at",
            (
                cosigned.origin,
                cosigned.size,
                cosigned.root_hash,
                cosigned.note,
                cosigned.cosigned_at,
            ),
        )

    def keep(self, evidence: Evidence) -> bool:
        """Record ``evidence``; return False if this tree head was already kept."""
        cursor = self._conn.execute(
            "INSERT INTO evidence (origin, size, root_hash, reason, request, latest_size,"
            " latest_root, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            astuple(evidence),
        )
        return cursor.rowcount == 1


def _latest(conn: sqlite3.Connection, origin: str) -> Cosigned | None:
    row = conn.execute(
        "SELECT origin, size, root_hash, note, cosigned_at FROM cosigned WHERE origin = ?",
        (origin,),
    ).fetchone()
    return None if row is None else Cosigned(*row)


class WitnessState:
    """Open ``path`` (created if missing) and serialise every use of it through one connection.

    Calls block; the witness runs them in a worker thread. A witness handles
    few requests, so one connection behind a lock is plenty.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Yield a write transaction; commit if the block ends normally, else roll back."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def latest(self, origin: str) -> Cosigned | None:
        with self._lock:
            return _latest(self._conn, origin)

    def all_latest(self) -> list[Cosigned]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT origin, size, root_hash, note, cosigned_at FROM cosigned ORDER BY origin"
            ).fetchall()
        return [Cosigned(*row) for row in rows]

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        """Return the evidence kept (for one origin, or all), oldest first."""
        query = (
            "SELECT origin, size, root_hash, reason, request, latest_size, latest_root,"
            " received_at FROM evidence WHERE ? IS NULL OR origin = ? ORDER BY id"
        )
        with self._lock:
            rows = self._conn.execute(query, (origin, origin)).fetchall()
        return [Evidence(*row) for row in rows]
