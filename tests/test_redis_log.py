"""The replicated database against a real redis-server: one log, identical replicas, the fence."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import TIMEOUT

from broadcaster import wal
from broadcaster.db import Database, written_position
from broadcaster.errors import ConfigError, Unavailable
from broadcaster.recording import writes
from broadcaster.replication import Replication

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, node TEXT, body TEXT,"
    " at REAL, raw BLOB)"
)


def node(path: Path, url: str, **options: Any) -> Database:
    return Database(path, [SCHEMA], replication=Replication(url, **options))


@pytest.fixture
async def two(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two nodes, each with its own replica file, on one fresh log."""
    a, b = node(tmp_path / "a" / "db", redis_url), node(tmp_path / "b" / "db", redis_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def insert(node_name: str, body: str, raw: bytes = b"\x00\xff") -> Callable[[Any], int]:
    def job(conn: Any) -> int:
        cur = conn.execute(
            "INSERT INTO notes (node, body, at, raw) VALUES (?, ?, ?, ?)",
            (node_name, body, 1234.000000001, raw),
        )
        return int(cur.lastrowid)

    return job


def rows(db: Database) -> Any:
    return db.read(lambda c: [tuple(r) for r in c.execute("SELECT * FROM notes ORDER BY id")])


async def test_concurrent_writes_on_two_nodes_make_one_history(
    two: tuple[Database, Database],
) -> None:
    """Writes racing on two nodes get ids 1..N once each, and both replicas end identical."""
    a, b = two
    ids = await asyncio.gather(
        *(a.write(insert("a", f"a{i}")) for i in range(40)),
        *(b.write(insert("b", f"b{i}", bytes([i]))) for i in range(40)),
    )
    assert sorted(ids) == list(range(1, 81))
    assert await a.sync() and await b.sync()
    on_a, on_b = await rows(a), await rows(b)
    assert on_a == on_b and len(on_a) == 80
    assert on_a[0][3] == 1234.000000001 and isinstance(on_a[0][4], bytes)


async def test_a_failing_job_leaves_nothing_in_the_log(two: tuple[Database, Database]) -> None:
    """A job that raises is rolled back and logged as nothing; the rest of its group stands."""
    a, b = two

    def half_then_fail(conn: Any) -> None:
        conn.execute("INSERT INTO notes (node, body) VALUES ('a', 'half')")
        raise ValueError("refused")

    results = await asyncio.gather(
        a.write(insert("a", "kept")), a.write(half_then_fail), return_exceptions=True
    )
    assert isinstance(results[1], ValueError)
    assert await b.sync()
    assert [r[2] for r in await rows(b)] == ["kept"]
    logged = redis.Redis.from_url(b.replication.url).xrange(wal.STREAM)  # type: ignore[union-attr]
    assert b"half" not in b"".join(f[b"d"] for _, f in logged)


async def test_a_write_tells_its_log_position_and_the_other_node_can_wait_for_it(
    two: tuple[Database, Database],
) -> None:
    """``written_position`` names the entry; ``wait_applied`` on the other node waits for it."""
    a, b = two
    await a.write(insert("a", "announced"))
    position = written_position()
    assert position is not None and position != wal.ORIGIN
    assert await b.wait_applied(position, within=TIMEOUT)
    assert [r[2] for r in await rows(b)] == ["announced"]


def test_the_fence_refuses_an_append_after_a_stale_head(redis_url: str) -> None:
    """Appending after a moved head raises Fenced; the same group twice is found, not doubled."""
    log = wal.Log(wal.connect(redis_url))
    first = log.append(wal.ORIGIN, {"g": "g1", "d": wal.encode([])})
    with pytest.raises(wal.Fenced):
        log.append(wal.ORIGIN, {"g": "g2", "d": wal.encode([])})
    assert log.append(wal.ORIGIN, {"g": "g1", "d": wal.encode([])}) == first  # a retried reply
    assert log.length() == 1


async def test_a_node_that_was_away_catches_up_when_it_opens(
    tmp_path: Path, redis_url: str
) -> None:
    """Entries written while a node was stopped (or died before committing) are applied at open."""
    a, b = node(tmp_path / "a" / "db", redis_url), node(tmp_path / "b" / "db", redis_url)
    await a.open()
    await b.open()
    await b.close()
    for i in range(5):
        await a.write(insert("a", f"while b was away {i}"))
    # As if a node died between its append and its local COMMIT:
    log = wal.Log(wal.connect(redis_url))
    statement = ["INSERT INTO notes (node, body) VALUES (?, ?)", ["c", "never committed locally"]]
    log.append(log.head(), {"g": "lost", "d": wal.encode([[statement]])})
    b = node(tmp_path / "b" / "db", redis_url)
    await b.open()
    try:
        assert [r[2] for r in await rows(b)][-1] == "never committed locally"
        assert len(await rows(b)) == 6
    finally:
        await a.close()
        await b.close()


async def test_writes_answer_503_while_redis_is_down_and_reads_go_on(
    tmp_path: Path, redis_url: str
) -> None:
    """With the log unreachable a write fails with log_unavailable; the replica still reads."""
    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    db = node(tmp_path / "db", redis_url)
    await db.open()
    try:
        await db.write(insert("a", "before"))
        db.replication.log = wal.Log(broken)  # type: ignore[union-attr]
        with pytest.raises(Unavailable) as refused:
            await db.write(insert("a", "during"))
        assert refused.value.code == "log_unavailable"
        assert [r[2] for r in await rows(db)] == ["before"]
    finally:
        await db.close()


async def test_a_replica_of_another_log_is_kept_not_overwritten(
    tmp_path: Path, redis_url: str
) -> None:
    """After Redis was emptied a node refuses to start rather than wipe its (maybe last) copy."""
    db = node(tmp_path / "db", redis_url)
    await db.open()
    await db.write(insert("a", "old log"))
    await db.close()
    redis.Redis.from_url(redis_url).flushall()
    with pytest.raises(ConfigError, match="migrate-redis"):
        await node(tmp_path / "db", redis_url).open()
    kept = sqlite3.connect(tmp_path / "db").execute("SELECT body FROM notes").fetchall()
    assert kept == [("old log",)]


async def test_neither_mode_opens_the_others_file(tmp_path: Path, redis_url: str) -> None:
    """A single-node database is refused as a replica, and a replica refused as a single node."""
    single = Database(tmp_path / "single" / "db", [SCHEMA])
    await single.open()
    await single.write(insert("a", "single-node data"))
    await single.close()
    with pytest.raises(ConfigError, match="migrate-redis"):
        await node(tmp_path / "single" / "db", redis_url).open()
    replica = node(tmp_path / "replica" / "db", redis_url)
    await replica.open()
    await replica.close()
    with pytest.raises(ConfigError, match="replica"):
        await Database(tmp_path / "replica" / "db", [SCHEMA]).open()


async def test_nodes_with_different_signing_keys_are_refused(
    tmp_path: Path, redis_url: str
) -> None:
    """The first node records its key id; a node with another key refuses to start."""
    first = node(tmp_path / "a" / "db", redis_url, key_id="aaaa")
    await first.open()
    await first.close()
    with pytest.raises(ConfigError, match="BROADCASTER_SIGNING_KEY"):
        await node(tmp_path / "b" / "db", redis_url, key_id="bbbb").open()


@pytest.mark.parametrize(
    ("sql", "logged"),
    [
        ("SELECT * FROM notes", False),
        ("  -- comment\n select 1", False),
        ("/* c */ VALUES (1)", False),
        ("PRAGMA foreign_keys", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
        ("WITH x AS (SELECT 1) INSERT INTO notes (body) SELECT * FROM x", True),
        ("insert into notes (body) values (?)", True),
        ("UPDATE notes SET body = ?", True),
        ("DELETE FROM notes", True),
        ("REPLACE INTO notes (id) VALUES (1)", True),
        ("CREATE TABLE t (x)", True),
        ("SAVEPOINT inner", True),
    ],
)
def test_statements_that_change_the_database_are_logged(sql: str, logged: bool) -> None:
    """Reads are not logged; every statement that may change the database is."""
    assert writes(sql) is logged


def test_no_logged_sql_depends_on_the_clock_or_chance() -> None:
    """No module's SQL calls CURRENT_TIMESTAMP, random(), or 'now': replays must agree."""
    pattern = re.compile(
        r"CURRENT_(TIMESTAMP|DATE|TIME)|\brandom(blob)?\s*\(|['\"]now['\"]\s*\)", re.I
    )
    offenders = []
    for path in [*ROOT.glob("broadcaster/**/*.py"), *ROOT.glob("channels/**/*.py")]:
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            quoted = re.findall(r"\"[^\"]*\"|'[^']*'", line)
            if any(pattern.search(q) for q in quoted):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_executescript_and_raw_cursors_are_refused_in_write_jobs(tmp_path: Path) -> None:
    """A write job cannot slip statements past the recorder."""
    from broadcaster.recording import Recorder

    recorder = Recorder(sqlite3.connect(tmp_path / "x.db"))
    with pytest.raises(TypeError):
        recorder.executescript("CREATE TABLE t (x)")
    with pytest.raises(TypeError):
        recorder.cursor()
