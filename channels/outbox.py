"""Queue deliveries inside the append transaction; lease them to workers; record every attempt.

The outbox is one table, ``deliveries``: a row per (channel, target, event,
entry). Rows are written by ``Outbox.hook``, a ``PUBLISHER`` hook, so they
commit in the same SQLite transaction as the entry: no entry without its
deliveries, and a UNIQUE key makes a second insert of the same row a no-op.
Rows hold references, not payloads: the payload is built from the store at
send time, so an entry redacted before it is sent goes out withheld.

A worker takes due rows with ``claim``, which sets ``leased_until`` and writes
the attempt row (outcome ``sending``) before anything is sent. A worker that
dies mid-attempt leaves the lease to expire; the next claim marks that
attempt ``interrupted`` and sends again, under the same message id
(``msg_<id>``), so delivery is at least once and receivers can de-duplicate.
``finish`` records the outcome and either completes the row, schedules the
next attempt (the retry schedule, with up to 20 % jitter added, never less;
``Retry-After`` when longer, up to a day) or dead-letters it after the last one.

States: ``pending`` (due at ``next_at``), ``held`` (endpoint paused or
disabled), ``delivered``, ``dead``, ``cancelled``, and for SMS the gateway's
``queued``/``accepted``/``buffered``/``undelivered`` (see ``channels.sms``).
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from broadcaster.appkeys import PUBLISHER
from broadcaster.clock import format_ts, now
from broadcaster.model import Entry

Outcome = Literal["ok", "retry", "failed", "hold", "cancel"]
_STATE_OF = {"failed": "dead", "hold": "held", "cancel": "cancelled"}
JITTER = 0.2
#: A receiver's ``Retry-After`` is honoured up to a day, whatever the schedule.
MAX_RETRY_AFTER = 86400.0


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: what to send, to whom, and which attempt this is."""

    id: int
    channel: str
    target: int
    event: str
    incident: str
    seq: int
    payload: str | None
    attempt: int
    attempt_id: int
    created_at: str

    @property
    def message_id(self) -> str:
        """Return the id that stays the same across retries (``webhook-id``, SMS DLR id)."""
        return f"msg_{self.id}"


@dataclass(frozen=True)
class Result:
    """What one attempt achieved; ``state`` overrides ``delivered`` for an ``ok``."""

    outcome: Outcome
    state: str | None = None
    code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Sender(Protocol):
    """Send deliveries of one channel; ``settle`` runs in the transaction recording each result."""

    channel: str
    concurrency: int
    per_target: int

    async def send(self, delivery: Delivery) -> Result: ...

    def settle(
        self, conn: sqlite3.Connection, delivery: Delivery, result: Result, state: str
    ) -> None: ...

    async def close(self) -> None: ...


#: ``enqueue(conn, incident, entry) -> rows added``, run inside the append transaction.
Enqueuer = Callable[[sqlite3.Connection, Mapping[str, Any], Entry], int]


class Outbox:
    """Hold the channels' enqueuers and senders, and wake the worker after a commit."""

    def __init__(self) -> None:
        self.enqueuers: list[Enqueuer] = []
        self.senders: dict[str, Sender] = {}
        self._waker: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def hook(self, conn: sqlite3.Connection, incident: Mapping[str, Any], entry: Entry) -> None:
        """Insert the entry's deliveries (runs on the writer thread, inside the append)."""
        added = sum(enqueue(conn, incident, entry) for enqueue in self.enqueuers)
        if added:
            # The worker's next claim is a write job, queued behind this transaction,
            # so it sees these rows once they are committed.
            self.notify()

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        with self._lock:
            self._waker = waker

    def notify(self) -> None:
        """Wake the worker of this process, if one runs; safe from any thread."""
        with self._lock:
            waker = self._waker
        if waker is not None:
            waker()


OUTBOX = web.AppKey("outbox", Outbox)


def outbox_of(app: web.Application) -> Outbox:
    """Return the app's outbox, creating it (schema and append hook) on first use."""
    if OUTBOX not in app:
        outbox = Outbox()
        app[OUTBOX] = outbox
        app[PUBLISHER].hooks.append(outbox.hook)
    return app[OUTBOX]


def enqueue(
    conn: sqlite3.Connection,
    channel: str,
    target: int,
    event: str,
    incident: str,
    seq: int,
    payload: str | None = None,
    state: str = "pending",
) -> int:
    """Insert one delivery unless the same one exists; return 1 if it was added."""
    moment = now()
    stamp = format_ts(moment)
    cur = conn.execute(
        "INSERT INTO deliveries (channel, target, event, incident, seq, payload, state,"
        " next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (channel, target, event, incident, seq, payload, state, moment.timestamp(), stamp, stamp),
    )
    return cur.rowcount


def claim(
    conn: sqlite3.Connection,
    free: Mapping[str, int],
    per_target: Mapping[str, int],
    busy: Counter[tuple[str, int]],
    lease: float,
) -> list[Delivery]:
    """Lease up to ``free[channel]`` due rows per channel and record their attempts as started.

    At most ``per_target[channel]`` rows per target are in flight at once
    (``busy`` counts this worker's), so one slow endpoint or phone cannot take
    every slot, and one subscriber's SMS go out in order.
    """
    moment = now()
    at, stamp = moment.timestamp(), format_ts(moment)
    claimed: list[Delivery] = []
    for channel, slots in free.items():
        if slots <= 0:
            continue
        limit = per_target.get(channel, 1)
        rows = conn.execute(
            "SELECT * FROM (SELECT d.*, ROW_NUMBER() OVER (PARTITION BY target"
            " ORDER BY next_at, id) AS rn FROM deliveries d WHERE channel = ?"
            " AND state = 'pending' AND next_at <= ? AND COALESCE(leased_until, 0) <= ?)"
            " WHERE rn <= ? ORDER BY next_at, id LIMIT ?",
            (channel, at, at, limit, slots * 2 + len(busy)),
        ).fetchall()
        taken: Counter[int] = Counter()
        for row in rows:
            target = row["target"]
            if busy[(channel, target)] + taken[target] >= limit:
                continue
            taken[target] += 1
            claimed.append(_start(conn, row, at + lease, stamp))
            if sum(taken.values()) >= slots:
                break
    return claimed


def _start(conn: sqlite3.Connection, row: sqlite3.Row, until: float, stamp: str) -> Delivery:
    conn.execute(
        "UPDATE delivery_attempts SET outcome = 'interrupted', finished_at = ?,"
        " error = 'no outcome recorded: the worker stopped during the attempt'"
        " WHERE delivery = ? AND outcome = 'sending'",
        (stamp, row["id"]),
    )
    attempt = row["attempts"] + 1
    conn.execute(
        "UPDATE deliveries SET attempts = ?, leased_until = ?, updated_at = ? WHERE id = ?",
        (attempt, until, stamp, row["id"]),
    )
    cur = conn.execute(
        "INSERT INTO delivery_attempts (delivery, n, started_at) VALUES (?, ?, ?)",
        (row["id"], attempt, stamp),
    )
    return Delivery(
        id=row["id"],
        channel=row["channel"],
        target=row["target"],
        event=row["event"],
        incident=row["incident"],
        seq=row["seq"],
        payload=row["payload"],
        attempt=attempt,
        attempt_id=int(cur.lastrowid or 0),
        created_at=row["created_at"],
    )


def retry_delay(schedule: tuple[int, ...], attempt: int, retry_after: float | None) -> float | None:
    """Return seconds until the attempt after ``attempt``, or ``None`` when none is left."""
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * (1 + random.random() * JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def finish(
    conn: sqlite3.Connection,
    delivery: Delivery,
    result: Result,
    duration_ms: int,
    schedule: tuple[int, ...],
    sender: Sender | None,
) -> str:
    """Record an attempt's result and move the delivery on; return its new state."""
    moment = now()
    stamp = format_ts(moment)
    conn.execute(
        "UPDATE delivery_attempts SET finished_at = ?, duration_ms = ?, outcome = ?,"
        " response_code = ?, error = ? WHERE id = ?",
        (stamp, duration_ms, result.outcome, result.code, result.error, delivery.attempt_id),
    )
    next_at = moment.timestamp()
    if result.outcome == "ok":
        state = result.state or "delivered"
    elif result.outcome == "retry":
        delay = retry_delay(schedule, delivery.attempt, result.retry_after)
        state = "dead" if delay is None else "pending"
        next_at += delay or 0
    else:
        state = _STATE_OF[result.outcome]
    cur = conn.execute(
        "UPDATE deliveries SET state = ?, next_at = ?, leased_until = NULL, updated_at = ?,"
        " last_error = ?, payload = CASE WHEN ? IN ('pending', 'held') THEN payload END"
        " WHERE id = ? AND state = 'pending'",
        (state, next_at, stamp, result.error, state, delivery.id),
    )
    if cur.rowcount == 0:  # settled meanwhile (a delivery report, a delete): keep that
        row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery.id,)).fetchone()
        return row["state"] if row else "cancelled"
    if sender is not None:
        sender.settle(conn, delivery, result, state)
    return state


def next_due(conn: sqlite3.Connection) -> float | None:
    """Return when the earliest pending row can be claimed (unix time), if any."""
    row = conn.execute(
        "SELECT MIN(MAX(next_at, COALESCE(leased_until, 0))) FROM deliveries"
        " WHERE state = 'pending'"
    ).fetchone()
    return row[0]


def depth(conn: sqlite3.Connection) -> dict[str, int]:
    """Count pending rows per channel (the queue depth operators watch)."""
    rows = conn.execute(
        "SELECT channel, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY channel"
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def attempts_of(conn: sqlite3.Connection, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Return every attempt of the given deliveries, oldest first, keyed by delivery id."""
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return found
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT delivery, n, started_at, finished_at, duration_ms, outcome, response_code,"
        f" error FROM delivery_attempts WHERE delivery IN ({marks}) ORDER BY delivery, n, id",
        ids,
    ).fetchall()
    for row in rows:
        found[row["delivery"]].append(
            {key: row[key] for key in row.keys() if key != "delivery"}  # noqa: SIM118
        )
    return found
