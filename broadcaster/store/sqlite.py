"""Run SQLite work off the event loop: one writer thread, a few reader threads.

Durability: WAL journal with ``synchronous=FULL``, so a transaction is on disk
when ``COMMIT`` returns, and nothing is acknowledged before that.

Throughput comes from group commit: the writer takes every job that is waiting
and runs them in one transaction, each inside its own ``SAVEPOINT``. A job that
raises is rolled back to its savepoint alone and its caller gets the error; the
others commit together with one fsync. If the commit itself fails (disk full,
read-only file system) every job of the group fails with 503 and nothing of
the group is on disk.

Jobs are plain functions ``fn(conn) -> result``; they must not await and must
do all their reading and writing through ``conn`` so that what they check and
what they write is one atomic step (this is what keeps ``seq`` gapless).

The PostgreSQL backend (``broadcaster.store.postgres``) offers the same two
verbs, so a job runs unchanged on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..errors import HTTPError, Unavailable

log = logging.getLogger(__name__)
SCHEMA = resources.files(__package__) / "sqlite_schema.sql"
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 256
#: Columns added to tables after they first shipped: ``CREATE TABLE IF NOT EXISTS`` leaves an
#: older file's table as it was, and SQLite has no ``ADD COLUMN IF NOT EXISTS``.
ADDED_COLUMNS = (
    ("incidents", "advice", "TEXT"),
    ("incidents", "pinned", "TEXT"),
    ("incidents", "initial", "TEXT"),
    ("incidents", "areas", "TEXT NOT NULL DEFAULT '[]'"),
    ("webhooks", "areas", "TEXT"),
    ("webhooks", "min_severity", "TEXT"),
    ("deliveries", "leased_by", "INTEGER"),
)


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    else:
        # A lawful redaction DELETEs a body; without this SQLite only unlinks the
        # record and the text stays readable in the freed page bytes of the file.
        conn.execute("PRAGMA secure_delete=ON")
    return conn


def next_group(
    jobs: queue.SimpleQueue[tuple[Any, Future[Any]] | None],
) -> tuple[list[tuple[Any, Future[Any]]], bool] | None:
    """Wait for a job, then take every job already waiting (up to ``MAX_GROUP``).

    Return the group and whether the stop marker (``None``) came after it, or
    ``None`` when the marker came first. Both databases' writers use it.
    """
    first = jobs.get()
    if first is None:
        return None
    group = [first]
    while len(group) < MAX_GROUP:
        try:
            item = jobs.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return group, True
        group.append(item)
    return group, False


class Database:
    """Own the SQLite file: schema, the writer thread and the reader pool."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, readonly=False)
        with conn:
            conn.executescript(SCHEMA.read_text(encoding="utf-8"))
            _add_columns(conn)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in the next group transaction; return once it is durable."""
        if self._writer is None:
            raise Unavailable("the store is not open", code="store_closed")
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return await asyncio.wrap_future(future)

    async def read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on a read-only connection in the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, job)

    def _run_read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return job(conn)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while (taken := next_group(self._jobs)) is not None:
                group, stop = taken
                self._run_group(conn, group)
                if stop:
                    return
        finally:
            conn.close()

    def _run_group(self, conn: sqlite3.Connection, group: list[tuple[Job, Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_all(group, exc)
            return
        for job, future in group:
            if not future.set_running_or_notify_cancel():
                continue
            conn.execute("SAVEPOINT job")
            try:
                result = job(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((future, False, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((future, True, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed, %d jobs refused: %s", len(outcomes), exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = _unavailable(exc)
            for future, _, _ in outcomes:
                future.set_exception(error)
            return
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                if isinstance(value, sqlite3.Error) and not isinstance(value, HTTPError):
                    value = _unavailable(value)
                future.set_exception(value)

    def _fail_all(self, group: list[tuple[Job, Future[Any]]], exc: sqlite3.Error) -> None:
        error = _unavailable(exc)
        for _, future in group:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        if column not in present:
            conn.execute(f'ALTER TABLE "{table}" ADD COLUMN {column} {declaration}')


def _unavailable(exc: sqlite3.Error) -> Unavailable:
    text = str(exc).lower()
    code = "storage_full" if "full" in text else "storage_error"
    error = Unavailable(f"the store cannot take writes now: {exc}", code=code)
    error.headers["Retry-After"] = "5"
    return error
