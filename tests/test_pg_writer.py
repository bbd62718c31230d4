"""The PostgreSQL writer: pipelined groups whose jobs fail alone and leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any

import pytest

from broadcaster.store import log
from broadcaster.store.pg_conn import PgConnection
from broadcaster.store.postgres import PgDatabase


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[PgDatabase]:
    database = PgDatabase(database_url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def run_group(db: PgDatabase, *jobs: Any) -> list[tuple[bool, Any]]:
    """Run ``jobs`` as one write group, as the writer thread does; return (ok, value) each."""
    conn = db.connect(autocommit=False)
    try:
        group: list[tuple[Any, Future[Any]]] = [(job, Future()) for job in jobs]
        outcomes = db._attempt(conn, group)
        return [(ok, value) for _, ok, value in outcomes]
    finally:
        conn.close()


class Refused(Exception):
    """A job's own refusal, after it wrote."""


def leaf(name: str) -> Any:
    def job(conn: PgConnection) -> int:
        return log.append_leaves(conn, [(name, 1, name.encode())])

    return job


def leaf_then_refuse(conn: PgConnection) -> None:
    log.append_leaves(conn, [("refused", 1, b"refused")])
    raise Refused


async def test_a_job_rolled_back_mid_group_leaves_no_gap_in_the_log(db: PgDatabase) -> None:
    """A job that logged a leaf and then failed gives its index to the next job of the group."""
    outcomes = run_group(db, leaf("a"), leaf_then_refuse, leaf("b"))
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], Refused)
    assert [value for ok, value in outcomes if ok] == [0, 1]
    rows = await db.read(
        lambda conn: conn.execute("SELECT idx, data FROM log_leaves ORDER BY idx").fetchall()
    )
    assert [(idx, bytes(data)) for idx, data in rows] == [(0, b"a"), (1, b"b")]


async def test_a_statement_error_stays_with_its_job(db: PgDatabase) -> None:
    """Pipelined statements still fail inside their own job: the others of the group commit."""

    def insert(code: str) -> Any:
        def job(conn: PgConnection) -> None:
            conn.execute(
                "INSERT INTO tokens (name, department, role, token_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (code, "d", "editor", code, "2026-01-01T00:00:00.000Z"),
            )

        return job

    outcomes = run_group(db, insert("one"), insert("one"), insert("two"))
    assert [ok for ok, _ in outcomes] == [True, False, True]
    names = await db.read(
        lambda conn: [r[0] for r in conn.execute("SELECT name FROM tokens ORDER BY id")]
    )
    assert names == ["one", "two"]
