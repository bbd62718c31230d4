"""Tell live delivery workers from dead ones, so that a lapsed lease passes only from the dead.

A lease alone cannot tell a dead worker from a slow one: a worker whose
results (and lease renewals) wait in a busy store's write queue longer than a
lease looks exactly like one that was killed, and another worker would send
its rows again. So every worker registers (a row of ``delivery_workers`` gives
it an id never given before), names itself in every lease it takes
(``deliveries.leased_by``) and, for as long as its process lives, holds a lock
that is released when the process dies, however it dies:

* PostgreSQL: a session advisory lock, ``pg_advisory_lock(NAMESPACE, id)``, on
  a connection of the worker's own (not the writer's, so no queue delays it).
  PostgreSQL drops it when the session ends: the process died and its socket
  closed, or TCP keepalives (set here to about 25 s) found the peer gone.
  ``pg_locks`` shows which are held.
* SQLite (one machine): an ``flock`` on ``<database>-workers/<id>.lock``,
  which the kernel releases when the process dies.

A claim takes a lapsed lease only when its worker holds no such lock
(``broadcaster.store.outbox.claim``), so a live worker's rows are never sent
by another, however long its store takes; a crashed worker's are taken over
once their lease lapses. If a live worker's own lock is lost (its PostgreSQL
session was cut), ``Presence.check`` takes it again; until then its rows are
kept by their leases alone, which it keeps renewing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

from ..clock import format_ts, now
from .contract import JobDatabase
from .pg_conn import PgConnection, dialect_of

#: The first key of every worker's advisory lock (the second is its id).
NAMESPACE = 0x42524F57  # "BROW"
#: Server-side keepalives of the lock's session: a peer gone silent is dropped in ~25 s.
_KEEPALIVES = (
    "tcp_keepalives_idle = 10",
    "tcp_keepalives_interval = 5",
    "tcp_keepalives_count = 3",
)
#: The ids of the workers holding their advisory lock in this database.
_LIVE_PG = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
    f" AND classid = {NAMESPACE} AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class Presence(Protocol):
    """A worker's proof of life: ``owner`` is its id; blocking calls, run off the loop."""

    owner: int

    @property
    def held(self) -> bool:
        """Tell whether the lock was held when last seen (no I/O)."""

    def check(self) -> None:
        """Take the lock if it is not held (first, or lost); raise if it cannot be taken."""

    def release(self) -> None:
        """Give the lock up (a clean stop): the worker's lapsed leases may be taken over."""


def register(conn: Any, host: str, pid: int) -> int:
    """Record a starting worker; return its id (never given before, on either backend)."""
    return int(
        conn.execute(
            "INSERT INTO delivery_workers (host, pid, started_at) VALUES (?, ?, ?) RETURNING id",
            (host, pid, format_ts(now())),
        ).fetchone()[0]
    )


async def enrol(db: JobDatabase) -> Presence:
    """Register a worker in ``db``; return what will hold its lock (``check`` takes it)."""
    owner = await db.write(partial(register, host=socket.gethostname(), pid=os.getpid()))
    if db.dialect == "postgresql":
        return PgPresence(cast(_Connects, db), owner)
    return FilePresence(lock_dir(cast(_HasPath, db).path), owner)


def live_owners(conn: Any, at: float) -> list[int]:
    """Return the ids of the live workers among those whose leases lapsed by ``at``.

    On PostgreSQL that is every worker holding its lock (``pg_locks``, one read);
    on SQLite each owner of a lapsed lease is tried with a shared ``flock``.
    """
    if dialect_of(conn) == "postgresql":
        return [row[0] for row in conn.execute(_LIVE_PG).fetchall()]
    rows = conn.execute(
        "SELECT DISTINCT leased_by FROM deliveries WHERE state = 'pending'"
        " AND leased_by IS NOT NULL AND leased_until <= ?",
        (at,),
    ).fetchall()
    if not rows:
        return []
    directory = lock_dir(Path(conn.execute("PRAGMA database_list").fetchone()["file"]))
    return [row[0] for row in rows if _locked(directory / f"{row[0]}.lock")]


class _Guarded:
    """Run a presence's ``check`` and ``release`` one at a time.

    A check may still run in its thread while the worker stops and releases.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()

    def check(self) -> None:
        with self._guard:
            self._check()

    def release(self) -> None:
        with self._guard:
            self._release()

    def _check(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class PgPresence(_Guarded):
    """Hold ``pg_advisory_lock(NAMESPACE, owner)`` on a connection of this worker's own."""

    def __init__(self, db: _Connects, owner: int) -> None:
        self.db = db
        self.owner = owner
        self._conn: PgConnection | None = None
        super().__init__()

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.broken

    def _check(self) -> None:
        if self._conn is not None and not self._conn.broken:
            try:
                self._conn.execute("SELECT 1").fetchone()  # also keeps an idle session alive
                return
            except Exception:  # noqa: BLE001 - the session is gone: open another
                self._release()
        conn = self.db.connect(autocommit=True)
        try:
            for setting in _KEEPALIVES:
                conn.execute(f"SET {setting}")
            taken = conn.execute("SELECT pg_try_advisory_lock(?, ?)", (NAMESPACE, self.owner))
            if not taken.fetchone()[0]:
                raise RuntimeError(f"delivery worker {self.owner}'s lock is held elsewhere")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # the session ends: PostgreSQL drops its locks
            self._conn = None


class FilePresence(_Guarded):
    """Hold an exclusive ``flock`` on ``directory/<owner>.lock``."""

    def __init__(self, directory: Path, owner: int) -> None:
        self.path = directory / f"{owner}.lock"
        self.owner = owner
        self._fd: int | None = None
        super().__init__()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _check(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return
            self._release()  # the file was removed under us: lock a new one
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Locked under another name, then renamed: the file is never seen unlocked.
        making = self.path.with_suffix(f".{os.getpid()}.new")
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(making, self.path)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def lock_dir(database: Path) -> Path:
    """Return the directory of the SQLite database's worker lock files."""
    return database.with_name(database.name + "-workers")


def _locked(path: Path) -> bool:
    """Tell whether a live process holds ``path``'s lock; remove the file of a dead one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    finally:
        os.close(fd)


class _Connects(Protocol):
    def connect(self, *, autocommit: bool) -> PgConnection: ...


class _HasPath(Protocol):
    path: Path
