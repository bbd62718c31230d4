"""Run store jobs on PostgreSQL: one writer connection with group commit, a few readers.

This mirrors ``broadcaster.store.sqlite.Database`` so that every job (a plain
function of a connection) runs unchanged on either backend; see
``pg_conn`` for the small adapter that makes the SQL portable.

Durability: a job's result is handed back only after ``COMMIT`` returned, and
PostgreSQL returns from ``COMMIT`` once the WAL is flushed (``synchronous_commit
= on``, and on the synchronous standby too when ``synchronous_standby_names``
names one). ``open`` refuses a server whose ``synchronous_commit`` is ``off``
or ``local`` while a synchronous standby is configured, since a 201 would then
not mean what the contract says.

Serialisation across nodes: every write group first takes one transaction-level
advisory lock (``pg_advisory_xact_lock``), so the groups of all nodes commit
one after another, as the single SQLite writer does on one node. Checks and
writes of a job are therefore one atomic step site-wide: ``seq`` stays gapless
and the chain cannot fork whichever node appends. Appends also lock their
incident's row (``FOR UPDATE``), which would keep one incident's chain linear
even without the group lock. Group commit keeps the cost of this at one round
of locking and one WAL flush per group, not per job.

Failures: a broken connection (PostgreSQL restarting, a failover) fails the
group with 503 and the next group reconnects; a libpq multi-host URL with
``target_session_attrs=read-write`` finds the promoted standby. A read-only
server (a standby not yet promoted) answers 503 ``store_read_only``. A
deadlock or serialisation failure retries the whole group once.

Round trips: a group of several jobs first runs without a sync at each job's
end (a job then costs only the round trips of the results it reads), since
nearly every group succeeds. A statement's error may then surface in a later
job's read, where it cannot be told apart: any database error in that mode
rolls the group back and runs it again with a sync per job, so each job gets
its own error exactly as before (jobs are re-runnable, as the deadlock retry
already requires).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ..errors import ConfigError, HTTPError, Unavailable
from .migrations import migrate
from .pg_conn import PgConnection
from .sqlite import next_group

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[PgConnection], Any]
#: The advisory lock every write group holds until it commits (any constant will do).
WRITE_LOCK = 0x42524F41  # "BROA"
CONNECT_TIMEOUT = 5


class PgDatabase:
    """Own the PostgreSQL connections: migrations, the writer thread and the reader pool."""

    dialect = "postgresql"

    def __init__(self, url: str, *, readers: int = 4) -> None:
        self.url = url
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="pg-read")
        self._reader_conns: list[PgConnection] = []
        self._lock = threading.Lock()

    def connect(self, *, autocommit: bool) -> PgConnection:
        """Open a connection to the read-write server the URL names."""
        raw = psycopg.connect(self.url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)
        return PgConnection(raw)

    async def open(self) -> None:
        try:
            conn = await asyncio.to_thread(self.connect, autocommit=True)
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to BROADCASTER_DATABASE_URL: {exc}") from exc
        try:
            await asyncio.to_thread(_check_durability, conn)
            await asyncio.to_thread(migrate, conn)
        finally:
            conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="pg-writer", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                with contextlib.suppress(Exception):
                    conn.close()
            self._reader_conns.clear()

    async def write(self, job: Callable[[PgConnection], T]) -> T:
        """Run ``job`` in the next group transaction; return once it is committed."""
        if self._writer is None:
            raise Unavailable("the store is not open", code="store_closed")
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return await asyncio.wrap_future(future)

    async def read(self, job: Callable[[PgConnection], T]) -> T:
        """Run ``job`` on a pooled autocommit connection (each statement sees the latest commit)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, job)

    def _run_read(self, job: Callable[[PgConnection], T]) -> T:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.broken:
            self._forget(conn)
            conn = None
        try:
            if conn is None:
                conn = self.connect(autocommit=True)
                self._local.conn = conn
                with self._lock:
                    self._reader_conns.append(conn)
            return job(conn)
        except psycopg.Error as exc:
            if conn is not None and conn.broken:
                self._forget(conn)
            raise _unavailable(exc) from exc

    def _forget(self, conn: PgConnection) -> None:
        self._local.conn = None
        with self._lock, contextlib.suppress(ValueError):
            self._reader_conns.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def _write_loop(self) -> None:
        conn: PgConnection | None = None
        try:
            while (taken := next_group(self._jobs)) is not None:
                group, stop = taken
                group = [(job, f) for job, f in group if f.set_running_or_notify_cancel()]
                conn = self._run_group(conn, group)
                if stop:
                    return
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def _run_group(
        self, conn: PgConnection | None, group: list[tuple[Job, Future[Any]]]
    ) -> PgConnection | None:
        """Run a group, retrying once on a deadlock or serialisation failure."""
        careful = len(group) == 1  # a lone job saves nothing by deferring its sync
        retried = False
        while True:
            try:
                if conn is None or conn.broken:
                    conn = self.connect(autocommit=False)
                outcomes = self._attempt(conn, group, careful=careful)
            except _Careful:
                _rollback(conn)
                careful = True
                continue
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                _rollback(conn)
                if retried:
                    _fail_all(group, exc)
                    return conn
                retried = True
                continue
            except psycopg.Error as exc:
                log.error("write group of %d jobs failed: %s", len(group), exc)
                if conn is not None:
                    _rollback(conn)
                    if conn.broken:
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                _fail_all(group, exc)
                return conn
            for future, ok, value in outcomes:
                if ok:
                    future.set_result(value)
                else:
                    if isinstance(value, psycopg.Error):
                        value = _unavailable(value)
                    future.set_exception(value)
            return conn

    @staticmethod
    def _attempt(
        conn: PgConnection, group: list[tuple[Job, Future[Any]]], *, careful: bool
    ) -> list[tuple[Future[Any], bool, Any]]:
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        conn.group = {}
        try:
            with conn.raw.pipeline() as conn.pipeline:
                try:
                    PgDatabase._run_jobs(conn, group, outcomes, careful=careful)
                finally:
                    conn.pipeline = None
                    conn.group = None
            conn.raw.commit()
        except psycopg.Error as exc:
            if careful or not _retry_carefully(exc):
                raise
            raise _Careful from exc
        return outcomes

    @staticmethod
    def _run_jobs(
        conn: PgConnection,
        group: list[tuple[Job, Future[Any]]],
        outcomes: list[tuple[Future[Any], bool, Any]],
        *,
        careful: bool,
    ) -> None:
        """Run each job in its savepoint, pipelined: a job costs a round trip per result it
        reads (plus, when ``careful``, one at its end), whatever the number of statements
        that only write."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        for job, future in group:
            conn.execute("SAVEPOINT job")
            try:
                result = job(conn)
                if careful:
                    conn.sync()  # this job's own errors surface here, inside its savepoint
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                raise
            except psycopg.OperationalError:
                raise  # the connection is gone: the whole group fails
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if not careful and _retry_carefully(exc):
                    raise _Careful from exc  # perhaps an earlier job's error
                if conn.group is not None:
                    conn.group.clear()  # what the job wrote is undone: forget what it cached
                conn.execute("ROLLBACK TO SAVEPOINT job")
                conn.execute("RELEASE SAVEPOINT job")
                if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
                    raise
                outcomes.append((future, False, exc))
            else:
                conn.execute("RELEASE SAVEPOINT job")
                outcomes.append((future, True, result))


class _Careful(Exception):
    """A statement failed in a group run without per-job syncs: run it again with them."""


def _retry_carefully(exc: BaseException) -> bool:
    """Tell whether ``exc`` may be one job's own error (not the connection's or the server's)."""
    return isinstance(exc, psycopg.Error) and not isinstance(
        exc,
        psycopg.OperationalError | pg_errors.ReadOnlySqlTransaction,
    )


def _rollback(conn: PgConnection | None) -> None:
    if conn is not None and not conn.broken:
        with contextlib.suppress(Exception):
            conn.raw.rollback()


def _fail_all(group: list[tuple[Job, Future[Any]]], exc: BaseException) -> None:
    error = _unavailable(exc) if not isinstance(exc, HTTPError) else exc
    for _, future in group:
        if not future.done():
            future.set_exception(error)


def _check_durability(conn: PgConnection) -> None:
    commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    standbys = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
    if commit == "off" or (commit == "local" and standbys):
        raise ConfigError(
            f"PostgreSQL runs with synchronous_commit = {commit}: an acknowledged entry could be"
            " lost in a crash. Set it to on (or remote_write/remote_apply) on the server."
        )


def _unavailable(exc: BaseException) -> Unavailable:
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        code = "store_read_only"
    elif isinstance(exc, pg_errors.DiskFull):
        code = "storage_full"
    else:
        code = "storage_error"
    error = Unavailable(f"the store cannot take this now: {exc}".strip(), code=code)
    error.headers["Retry-After"] = "5"
    return error
