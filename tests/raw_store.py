"""Reach a test's store underneath the service, on either backend, to look or to tamper.

``raw_store(settings)`` opens the SQLite file of the data directory or the
PostgreSQL database ``settings.database_url`` names, and yields a
connection taking sqlite-style SQL (``?`` placeholders) on both; what it
changes commits when the block ends. ``unguarded=True`` first switches off
the triggers that keep entries, checkpoints and the audit log append-only,
as someone holding the disk (SQLite: drop them) or PostgreSQL's superuser
(``session_replication_role = replica``: no ordinary trigger fires in this
session) could.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg

from broadcaster.settings import Settings
from broadcaster.store import database_path
from broadcaster.store.pg_conn import PgConnection

#: The tables whose triggers refuse UPDATE and DELETE.
APPEND_ONLY = ("entries", "checkpoints", "audit", "log_leaves", "log_hashes", "incident_creations")
#: What a refused write raises, on either backend.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


class RawStore:
    """One connection to the store with ``execute``, ``commit``, ``rollback`` and ``dump``."""

    def __init__(self, conn: sqlite3.Connection | PgConnection) -> None:
        self.conn = conn
        self.dialect = "postgresql" if isinstance(conn, PgConnection) else "sqlite"

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(sql, params)

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Return every row of ``sql`` as a plain tuple, comparable across backends."""
        return [tuple(row) for row in self.conn.execute(sql, params).fetchall()]

    def commit(self) -> None:
        (self.conn.raw if isinstance(self.conn, PgConnection) else self.conn).commit()

    def rollback(self) -> None:
        (self.conn.raw if isinstance(self.conn, PgConnection) else self.conn).rollback()

    def tables(self) -> list[str]:
        if self.dialect == "postgresql":
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return sorted(row[0] for row in self.conn.execute(sql).fetchall())

    def dump(self) -> str:
        """Return every row of every table as text (what a copy of the database would show)."""
        if isinstance(self.conn, sqlite3.Connection):
            return "\n".join(self.conn.iterdump())
        return "\n".join(
            row[0]
            for table in self.tables()
            for row in self.conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
        )

    def unguard(self) -> None:
        if self.dialect == "postgresql":
            self.conn.execute("SET session_replication_role = replica")
            return
        for table in APPEND_ONLY:
            for change in ("update", "delete"):
                self.conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{change}")


@contextlib.contextmanager
def raw_store(settings: Settings, *, unguarded: bool = False) -> Iterator[RawStore]:
    """Yield a raw connection to the test's store; commit at the end of the block."""
    if settings.database_url:
        raw = RawStore(PgConnection(psycopg.connect(settings.database_url)))
    else:
        raw = RawStore(sqlite3.connect(database_path(settings)))
    try:
        if unguarded:
            raw.unguard()
        yield raw
        raw.commit()
    finally:
        raw.conn.close()
