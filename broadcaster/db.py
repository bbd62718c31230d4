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

With a ``Replication`` (multi-node mode on Redis) the file is a replica and
groups run through the shared log instead (``broadcaster.replication``); the
single-node path is untouched by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError, HTTPError, Unavailable

if TYPE_CHECKING:
    from .replication import Replication

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 256
#: Seconds ``wait_applied`` waits for the replica before giving up.
APPLY_WAIT = 5.0
_written: ContextVar[str | None] = ContextVar("written", default=None)


def written_position() -> str | None:
    """Return the log position of this task's last write (multi-node mode), else ``None``."""
    return _written.get()


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


class Database:
    """Own the SQLite file: schema, the writer thread and the reader pool."""

    def __init__(
        self,
        path: Path,
        schema: Iterable[str] = (),
        *,
        readers: int = 4,
        replication: Replication | None = None,
    ) -> None:
        self.path = path
        self.replication = replication
        self._schema = list(schema)
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def add_schema(self, *statements: str) -> None:
        """Register DDL (``CREATE ... IF NOT EXISTS``) to run at ``open``."""
        self._schema.extend(statements)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replication = self.replication
        if replication is not None:
            await asyncio.to_thread(replication.prepare, self.path)
        conn = _connect(self.path, readonly=False)
        if replication is None and _is_replica(conn):
            conn.close()
            raise ConfigError(
                f"{self.path} is a replica of a shared log in Redis: set BROADCASTER_REDIS_URL"
                " (to run it alone instead, drop its wal_state table; see docs/redis.md)"
            )
        with conn:
            for statement in self._schema:
                conn.executescript(statement)
        if replication is not None:
            await asyncio.to_thread(replication.attach, conn)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()
        if replication is not None:
            await replication.start(self._jobs.put)

    async def close(self) -> None:
        if self.replication is not None:
            await self.replication.stop()
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
        result = await asyncio.wrap_future(future)
        if self.replication is not None:
            _written.set(getattr(future, "position", None))
        return result

    async def wait_applied(self, position: str | None, within: float = APPLY_WAIT) -> bool:
        """Wait until reads see the write logged at ``position``; at once on a single node."""
        if self.replication is None or position is None:
            return True
        return await self.replication.wait_applied(position, within)

    def on_replicated(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after writes of other nodes were applied here (never on one node)."""
        if self.replication is not None:
            self.replication.listeners.append(callback)

    async def sync(self) -> bool:
        """Wait until reads see every write acknowledged on any node; at once on a single node."""
        if self.replication is None:
            return True
        return await self.replication.sync()

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
        run = self._run_group if self.replication is None else self.replication.run_group
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    group.append(item)
                run(conn, group)
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


def _is_replica(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'wal_state'").fetchone()
    return found is not None


def _unavailable(exc: sqlite3.Error) -> Unavailable:
    text = str(exc).lower()
    code = "storage_full" if "full" in text else "storage_error"
    error = Unavailable(f"the store cannot take writes now: {exc}", code=code)
    error.headers["Retry-After"] = "5"
    return error
