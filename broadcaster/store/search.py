"""Keep the search index: one interface, an implementation per dialect.

``broadcaster.search.service`` (the hook, the endpoint, the purge) and
``broadcaster.search.query`` (terms, snippets) call only these functions, in
their jobs; the SQL lives in ``search_sqlite`` (FTS5) and ``search_postgres``
(pg_trgm plus a character-pair index). Both answer the same question the same
way: every term is a case-insensitive substring of the entry's visible text or
of its incident's title, the ``WINDOW`` most recent matches are ranked, and a
redacted entry is never returned.

A search gives up after ``BUDGET`` seconds (SQLite: a progress handler
interrupts the statement; PostgreSQL: ``statement_timeout`` for that query)
and raises ``SearchTimeout``, a 503 ``search_timeout`` asking for a narrower
search: one pathological query must not hold a reader for many seconds.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .pg_conn import dialect_of
from .search_common import BUDGET, Hit


def _impl(conn: Any) -> ModuleType:
    if dialect_of(conn) == "postgresql":
        from . import search_postgres

        return search_postgres
    from . import search_sqlite

    return search_sqlite


def index(conn: Any, incident: str, seq: int, posted_at: str, title: str, text: str) -> None:
    """Index an entry's visible ``text`` under its incident's ``title``; a repeat is a no-op."""
    _impl(conn).index(conn, incident, seq, posted_at, title, text)


def unindex(conn: Any, incident: str, seq: int) -> None:
    """Remove entry ``seq`` of ``incident`` from the index; a no-op if it is not there."""
    _impl(conn).unindex(conn, incident, seq)


def find(
    conn: Any, terms: list[str], incident: str | None, limit: int
) -> tuple[list[Hit], tuple[str, ...]]:
    """Return the best ``limit`` matches of lower-case ``terms`` and what to highlight.

    Every term must be a substring of the entry's text or its incident's title.
    """
    impl = _impl(conn)
    with impl.time_budget(conn, BUDGET):
        hits: tuple[list[Hit], tuple[str, ...]] = impl.find(conn, terms, incident, limit)
    return hits


def merge_step(conn: Any) -> bool:
    """Do a bounded share of the index's deferred clean-up; return True while there was work.

    Only SQLite's FTS5 defers removing deleted postings; PostgreSQL has nothing to merge.
    """
    return dialect_of(conn) == "sqlite" and bool(_impl(conn).merge_step(conn))


def is_built(conn: Any) -> bool:
    """Return True once every entry written before the index existed has been indexed."""
    return conn.execute("SELECT 1 FROM search_state WHERE key = 'built'").fetchone() is not None


def mark_built(conn: Any) -> None:
    conn.execute("INSERT INTO search_state (key, value) VALUES ('built', '1')")


def incident_titles(conn: Any) -> list[tuple[str, str]]:
    """Return ``(id, title)`` of every incident, for indexing them all."""
    return [(row[0], row[1]) for row in conn.execute("SELECT id, title FROM incidents")]
