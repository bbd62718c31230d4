"""Replicate the SQLite database through the shared log in Redis (multi-node mode).

With ``BROADCASTER_REDIS_URL`` set, each node's SQLite file is a *replica*
and the authoritative history is the log of ``broadcaster.wal``: every
committed write group of every node, as the statements it ran. A group runs
on the writer thread like this:

1. ``BEGIN IMMEDIATE`` on the replica, then take the global lock in Redis
   (while another node holds it, apply what that node appends);
2. catch the replica up to the log's head, inside the same transaction;
3. run the jobs on a ``Recorder``, each in its savepoint; a job that raises
   is rolled back and contributes nothing;
4. append the recorded statements with the fence (the head must still be
   the one caught up to); if another node got in first, roll back and go to 1;
5. ``COMMIT`` locally, recording the entry's id in ``wal_state`` in the same
   transaction, and only then answer the callers.

Nothing is acknowledged before step 4 succeeded, and with Redis's
``appendfsync always`` that means the entry is on Redis's disk. A node that
dies between 4 and 5 finds the entry in the log when it starts again. If the
reply to an append is lost, the node looks for its group id right after the
head it fenced on: found, the write stands; otherwise the callers get 503 (the
entry may still appear if Redis took it: a 503 never claims it did not).

Followers apply new entries through the same writer thread (``CATCH_UP``
jobs queued by a tailer task blocked in ``XREAD``), so applying never
interleaves with a local group. The replica runs with ``synchronous=NORMAL``:
a power cut may lose its last transactions, which the log gives back.

Failure modes: Redis unreachable, writes answer 503 ``log_unavailable`` and
reads go on from the replica; a log entry that does not apply, or a log
behind this replica (Redis lost acknowledged writes), stops writes on this
node with 503 ``replica_diverged`` until an operator looks (docs/redis.md).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from . import wal
from .db import Job, _unavailable
from .errors import HTTPError, Unavailable
from .recording import Recorder
from .replica_file import check_replica, check_signing_key, warn_unless_durable
from .replica_follow import CATCH_UP, Follower
from .snapshot import restore
from .wal import ORIGIN, Log, LogEntry, parse

log = logging.getLogger(__name__)
STATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS wal_state"
    " (id INTEGER PRIMARY KEY CHECK (id = 1), log TEXT NOT NULL, applied TEXT NOT NULL)"
)
#: How long the lock outlives a node that died holding it (milliseconds).
LOCK_TTL_MS = 2000
#: Seconds a group waits for the lock before answering 503.
LOCK_WAIT = 10.0
#: Longest single wait for the lock holder's append (milliseconds).
WAIT_SLICE_MS = 10
#: Entries read and applied per transaction.
BATCH = 256
#: Tries of a group that keeps meeting the fence before it answers 503.
ATTEMPTS = 8
#: Own group ids remembered, so the tailer leaves this node's entries alone.
OWN_GROUPS = 4096
Outcome = tuple["Future[Any]", bool, Any]


def unavailable(message: str, code: str) -> Unavailable:
    error = Unavailable(message, code=code)
    error.headers["Retry-After"] = "5"
    return error


class Replication(Follower):
    """Run write groups through the shared log; keep the local replica caught up."""

    def __init__(
        self, url: str, *, key_id: str | None = None, client: Any = None, lock_ttl_ms: int = 0
    ) -> None:
        super().__init__(url)
        self.log = Log(client or wal.connect(url))
        self.key_id = key_id
        self.lock_ttl_ms = lock_ttl_ms or LOCK_TTL_MS
        self.identity = ""
        self.restored: str | None = None
        self.broken: Unavailable | None = None

    # -- at open, before the writer thread runs (blocking) -----------------
    def prepare(self, path: Path) -> None:
        """Check Redis, the signing key and the replica file; restore the log's snapshot if new."""
        self.identity = self.log.identity()
        warn_unless_durable(self.log)
        if self.key_id is not None:
            check_signing_key(self.log, self.key_id)
        check_replica(path, self.identity)
        if not path.exists():
            first = self.log.read(ORIGIN, 1)
            if first and first[0].snapshot_part is not None:
                self.restored = restore(self.log, first[0], path, STATE_SCHEMA, self.identity)

    def attach(self, conn: sqlite3.Connection) -> None:
        """Set the replica up on the writer connection and apply the whole log."""
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(STATE_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO wal_state (id, log, applied) VALUES (1, ?, ?)",
            (self.identity, self.restored or ORIGIN),
        )
        while self.follow(conn, None):
            pass
        self.applied = parse(_state(conn))

    # -- on the writer thread ------------------------------------------------
    def run_group(self, conn: sqlite3.Connection, group: list[tuple[Job, Future[Any]]]) -> None:
        """Run one group: lead it through the log, or only apply the log."""
        jobs: list[tuple[Job, Future[Any]]] = []
        followers: list[Future[Any]] = []
        for job, future in group:
            if future.set_running_or_notify_cancel():
                (followers.append(future) if job is CATCH_UP else jobs.append((job, future)))
        if jobs:
            try:
                outcomes, position = self._lead(conn, jobs)
            except BaseException as exc:  # noqa: BLE001 - every caller of the group gets it
                error = self._error(exc)
                for _, future in jobs:
                    future.set_exception(error)
            else:
                _deliver(outcomes, position)
        if followers:
            hints = [getattr(f, "hint", None) for f in followers]
            try:
                self.follow(conn, next((h for h in hints if h), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                error = self._error(exc)
                for future in followers:
                    future.set_exception(error)
            else:
                for future in followers:
                    future.set_result(None)

    def follow(self, conn: sqlite3.Connection, hint: tuple[str, list[LogEntry]] | None) -> int:
        """Apply the next entries (``hint`` if it joins up); return how many were applied."""
        if self.broken is not None:
            raise self.broken
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = applied = _state(conn)
            entries: list[LogEntry] | None = None
            if hint is not None and parse(hint[0]) <= parse(applied):
                entries = [e for e in hint[1] if e.position > parse(applied)]
            if entries is None:
                entries = self.log.read(applied, BATCH)
            applied = self._apply(conn, entries, applied)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if applied != before:
            self.notify(applied, remote=True)
        return len(entries)

    def _lead(
        self, conn: sqlite3.Connection, jobs: list[tuple[Job, Future[Any]]]
    ) -> tuple[list[Outcome], str]:
        if self.broken is not None:
            raise self.broken
        for _ in range(ATTEMPTS):
            conn.execute("BEGIN IMMEDIATE")
            token, held, position = secrets.token_hex(8), False, None
            try:
                head = self._acquire(conn, token)
                held = True
                before = _state(conn)
                applied = self._catch_up(conn, head)
                outcomes, logged = _run_jobs(conn, jobs)
                if logged:
                    position = self._append(applied, logged, token)
                    held = False  # the append script freed the lock
                    conn.execute("UPDATE wal_state SET applied = ?", (position,))
            except wal.Fenced:
                conn.execute("ROLLBACK")
                continue
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            finally:
                if held:
                    with contextlib.suppress(RedisError):
                        self.log.release(token)
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if position is None:
                    raise
                # Durable in the log already: acknowledge; the replica applies it later.
                log.error(
                    "entry %s is in the log but the replica did not commit: %s", position, exc
                )
                return outcomes, position
            self.notify(position or applied, remote=applied != before)
            return outcomes, position or applied
        raise unavailable("other nodes kept writing first; try again", "log_contention")

    def _acquire(self, conn: sqlite3.Connection, token: str) -> str:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            taken, head, holder_ms = self.log.acquire(token, self.lock_ttl_ms)
            if taken:
                return head
            if time.monotonic() > deadline:
                raise unavailable("another node has held the write lock too long", "log_busy")
            # Apply what the holder appends meanwhile: XREAD wakes as it lands.
            applied = _state(conn)
            block = min(max(holder_ms, 1), WAIT_SLICE_MS)
            self._apply(conn, self.log.wait(applied, block, BATCH), applied)

    def _catch_up(self, conn: sqlite3.Connection, head: str) -> str:
        applied = _state(conn)
        while parse(applied) < parse(head):
            entries = self.log.read(applied, BATCH)
            if not entries:
                raise self._diverge(f"the log ends before its recorded head {head}")
            applied = self._apply(conn, entries, applied)
        if parse(applied) > parse(head):
            raise self._diverge(
                f"this replica applied {applied}, past the log's head {head}:"
                " Redis lost acknowledged writes or was emptied"
            )
        return applied

    def _append(self, expected: str, logged: list[list[wal.Statement]], token: str) -> str:
        group = secrets.token_hex(8)
        self.own[group] = None
        while len(self.own) > OWN_GROUPS:  # oldest first: dicts keep insertion order
            self.own.pop(next(iter(self.own)), None)
        try:
            return self.log.append(expected, {"g": group, "d": wal.encode(logged)}, token)
        except (ConnectionError, TimeoutError, RedisError) as exc:
            # The reply was lost: the entry is there or not; look once more.
            with contextlib.suppress(RedisError, ConnectionError, TimeoutError):
                found = self.log.find_group(expected, group)
                if found is not None:
                    return found
            message = f"the shared log did not confirm the write: {exc}"
            raise unavailable(message, "log_unavailable") from exc

    def _apply(self, conn: sqlite3.Connection, entries: list[LogEntry], applied: str) -> str:
        start = applied
        for entry in entries:
            if entry.position <= parse(applied):
                continue
            if entry.snapshot_part is not None:
                raise self._diverge("a snapshot was appended after this replica was built")
            try:
                for job in entry.jobs():
                    conn.execute("SAVEPOINT apply")
                    for sql, params in job:
                        conn.execute(sql, params)
                    conn.execute("RELEASE apply")
            except sqlite3.OperationalError:
                raise  # the disk, not the log: retried at the next group
            except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
                raise self._diverge(f"log entry {entry.id} does not apply: {exc}") from exc
            applied = entry.id
        if applied != start:
            conn.execute("UPDATE wal_state SET applied = ?", (applied,))
        return applied

    def _diverge(self, reason: str) -> Unavailable:
        log.critical("replica diverged, writes stop on this node: %s", reason)
        self.broken = unavailable(f"this node's replica diverged: {reason}", "replica_diverged")
        return self.broken

    @staticmethod
    def _error(exc: BaseException) -> BaseException:
        if isinstance(exc, HTTPError):
            return exc
        if isinstance(exc, sqlite3.Error):
            return _unavailable(exc)
        if isinstance(exc, RedisError | ConnectionError | TimeoutError):
            return unavailable(
                f"the shared log (Redis) cannot be reached: {exc}", "log_unavailable"
            )
        return exc


def _run_jobs(
    conn: sqlite3.Connection, jobs: list[tuple[Job, Future[Any]]]
) -> tuple[list[Outcome], list[list[wal.Statement]]]:
    recorder = Recorder(conn)
    outcomes: list[Outcome] = []
    logged: list[list[wal.Statement]] = []
    for job, future in jobs:
        mark = len(recorder.statements)
        conn.execute("SAVEPOINT job")
        try:
            result = job(recorder)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            del recorder.statements[mark:]
            outcomes.append((future, False, exc))
        else:
            conn.execute("RELEASE job")
            if len(recorder.statements) > mark:
                logged.append(recorder.statements[mark:])
            outcomes.append((future, True, result))
    return outcomes, logged


def _deliver(outcomes: list[Outcome], position: str) -> None:
    for future, ok, value in outcomes:
        future.position = position  # type: ignore[attr-defined]  # read by Database.write
        if ok:
            future.set_result(value)
        else:
            if isinstance(value, sqlite3.Error) and not isinstance(value, HTTPError):
                value = _unavailable(value)
            future.set_exception(value)


def _state(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT applied FROM wal_state").fetchone()[0]
