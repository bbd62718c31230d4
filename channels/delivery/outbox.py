"""Queue deliveries inside the append transaction; lease them to workers; record every attempt.

The outbox is one table, ``deliveries``: a row per (channel, target, event,
entry). Rows are written by ``Outbox.hook``, a ``PUBLISHER`` hook, so they
commit in the same transaction as the entry: no entry without its
deliveries, and a UNIQUE key makes a second insert of the same row a no-op.
Rows hold references, not payloads: the payload is built from the store at
send time, so an entry redacted before it is sent goes out withheld.

A worker takes due rows with ``claim`` (``broadcaster.store.outbox``, which
keeps the SQL), which sets ``leased_until`` and writes the attempt row (outcome
``sending``) before anything is sent; on PostgreSQL workers of every node
claim from the same table and never lease the same row. A worker that
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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from broadcaster.appkeys import PUBLISHER
from broadcaster.clock import now
from broadcaster.store import outbox as store
from broadcaster.store.outbox import Delivery
from broadcaster.timeline.model import Entry

Outcome = Literal["ok", "retry", "failed", "hold", "cancel"]
_STATE_OF = {"failed": "dead", "hold": "held", "cancel": "cancelled"}
JITTER = 0.2
#: A receiver's ``Retry-After`` is honoured up to a day, whatever the schedule.
MAX_RETRY_AFTER = 86400.0


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

    def settle(self, conn: Any, delivery: Delivery, result: Result, state: str) -> None: ...

    async def close(self) -> None: ...


#: ``enqueue(conn, incident, entry) -> rows added``, run inside the append transaction.
Enqueuer = Callable[[Any, Mapping[str, Any], Entry], int]


class Outbox:
    """Hold the channels' enqueuers and senders, and wake the worker after a commit."""

    def __init__(self) -> None:
        self.enqueuers: list[Enqueuer] = []
        self.senders: dict[str, Sender] = {}
        self._waker: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def hook(self, conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
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
    """Return the app's outbox, creating it (and its append hook) on first use."""
    if OUTBOX not in app:
        outbox = Outbox()
        app[OUTBOX] = outbox
        app[PUBLISHER].hooks.append(outbox.hook)
    return app[OUTBOX]


def retry_delay(schedule: tuple[int, ...], attempt: int, retry_after: float | None) -> float | None:
    """Return seconds until the attempt after ``attempt``, or ``None`` when none is left."""
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * (1 + random.random() * JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def finish(
    conn: Any,
    delivery: Delivery,
    result: Result,
    duration_ms: int,
    schedule: tuple[int, ...],
    sender: Sender | None,
) -> str:
    """Record an attempt's result and move the delivery on; return its new state."""
    next_at = now().timestamp()
    if result.outcome == "ok":
        state = result.state or "delivered"
    elif result.outcome == "retry":
        delay = retry_delay(schedule, delivery.attempt, result.retry_after)
        state = "dead" if delay is None else "pending"
        next_at += delay or 0
    else:
        state = _STATE_OF[result.outcome]
    moved = store.record(
        conn,
        delivery,
        outcome=result.outcome,
        code=result.code,
        error=result.error,
        duration_ms=duration_ms,
        state=state,
        next_at=next_at,
    )
    if not moved:  # settled meanwhile (a delivery report, a delete): keep that
        return store.state_of(conn, delivery.id) or "cancelled"
    if sender is not None:
        sender.settle(conn, delivery, result, state)
    return state


@dataclass(frozen=True)
class Done:
    """An attempt that has ended, waiting for its result to be recorded."""

    delivery: Delivery
    result: Result
    duration_ms: int


def finish_all(
    conn: Any, done: list[Done], schedule: tuple[int, ...], senders: Mapping[str, Sender]
) -> list[str]:
    """Record every result in ``done`` in one transaction; return their new states, in order."""
    return [
        finish(
            conn,
            item.delivery,
            item.result,
            item.duration_ms,
            schedule,
            senders.get(item.delivery.channel),
        )
        for item in done
    ]
