"""Deliver what the outbox holds: claim due rows, send them concurrently, record each outcome.

One ``Worker`` per process runs in a ``cleanup_ctx`` of ``broadcaster serve``
(unless ``BROADCASTER_WORKER=0``) or alone in ``broadcaster worker``; several
may share one database, on one node (SQLite) or on many (PostgreSQL), since a
claim is a lease written in one transaction that no other claim can share
(``broadcaster.store.outbox``). Each channel's sender has its own concurrency
bound, and a per-target bound, so a flood of SMS never takes the webhooks'
slots and one slow endpoint cannot stall the others.

Latency: in the process that appends, the outbox hook wakes the worker as the
entry commits (the claim that follows queues behind that commit). Every entry
announced on the bus, by any node, also nudges the worker: it reads when the
next row is due and claims if one is, so rows queued on another node leave at
once. The bus may be down or lose messages, so the worker also polls that read
every ``POLL`` seconds: nothing waits longer than that for a wake-up. A lease
lasts 1.5 times the per-attempt timeout plus 2 s, so a SIGKILLed worker's rows
are sent again that long after it died. On a graceful stop, attempts still
running after ``GRACE`` seconds are cancelled and rescheduled like failed ones.

A live worker never lets another take what it is sending, however long a
busy store takes to record its results: each lease names its worker, and a
lapsed lease is taken over only from a worker that no longer holds its lock
(``broadcaster.store.workers``: a PostgreSQL session lock or a file lock, both
released when the process dies, however it dies). So a row is sent again only
after its worker died (or, on PostgreSQL, lost its session for longer than a
lease), and a worker alive but stuck keeps its rows until it is stopped.
Every third of a lease the worker checks its lock (taking it again if its
session was cut) and renews the leases of its attempts still sending or
waiting for their result (one write job), which keep the rows meanwhile.
Results are recorded in batches: one write job for every result ready at that
moment, not one per delivery, so a burst of sends costs the store a few jobs
instead of one each; a batch does not wait for the one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from broadcaster.appkeys import BUS, DB, METRICS, SETTINGS
from broadcaster.background import background
from broadcaster.bus import Bus, listen_forever
from broadcaster.bus.message import BusMessage
from broadcaster.metrics import Metrics
from broadcaster.store.contract import JobDatabase as Database
from broadcaster.store.outbox import Delivery, claim, depth, next_due, renew
from broadcaster.store.workers import Presence, enrol

from .outbox import OUTBOX, Done, Outbox, Result, finish_all, outbox_of

log = logging.getLogger(__name__)
POLL = 0.5
GRACE = 5.0
DEPTH_EVERY = 5.0


class Worker:
    """Run the delivery loop for every sender registered in ``outbox``."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        metrics: Metrics,
        *,
        schedule: tuple[int, ...],
        timeout: float,
        poll: float = POLL,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.metrics = metrics
        self.schedule = schedule
        self.lease = timeout * 1.5 + 2
        self.poll = poll
        self.inflight: Counter[str] = Counter()
        self.busy: Counter[tuple[str, int]] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Attempts claimed and not yet recorded, by attempt id: their leases are renewed.
        self._sending: dict[int, Delivery] = {}
        self._ended: list[tuple[Done, asyncio.Future[str | None]]] = []
        self._results = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        #: This worker's lock, proof of life: while it is held nobody else takes its rows.
        self._presence: Presence | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._claim_now = False
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._depth_at = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:  # called from the store's writer thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake)

        self.outbox.set_waker(wake)
        self._loop_task = asyncio.create_task(self._run(), name="delivery-worker")
        self._recorder = asyncio.create_task(self._record_loop(), name="delivery-results")
        self._renewer = asyncio.create_task(self._renew_loop(), name="delivery-leases")

    def wake(self) -> None:
        """Claim at once: rows were just committed in this process."""
        self._claim_now = True
        self._wake.set()

    def nudge(self) -> None:
        """Check soon whether a row is due (another node may have queued one)."""
        self._wake.set()

    async def follow(self, bus: Bus) -> None:
        """Nudge the worker for every message on the bus, until cancelled."""

        async def nudged(_message: BusMessage) -> None:
            # An entry from any node, or a resubscription (messages may have
            # been lost): each may mean a row is due.
            self.nudge()

        await listen_forever(bus, nudged, name="the delivery worker")

    async def stop(self) -> None:
        """Stop claiming, give running attempts ``GRACE`` seconds, cancel the rest, close."""
        self.outbox.set_waker(None)
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            done, _ = await asyncio.wait({self._loop_task}, timeout=GRACE)
            if not done:  # stuck in a claim on a store that does not answer
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._stop_helpers()
        if self._presence is not None:  # last: its lapsed leases may now be taken over
            await asyncio.to_thread(self._presence.release)
        for sender in self.outbox.senders.values():
            try:
                await sender.close()
            except Exception:
                log.exception("closing the %s sender failed", sender.channel)

    async def _stop_helpers(self) -> None:
        """Record the results still queued (up to ``GRACE`` s), then stop renewing leases."""
        self._closing = True
        self._results.set()
        if self._recorder is not None:
            done, _ = await asyncio.wait({self._recorder}, timeout=GRACE)
            if not done:
                self._recorder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._recorder
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer

    async def _run(self) -> None:
        woken = True  # claim at once on start: rows may be due from before a restart
        while not self._stopping:
            self._wake.clear()
            self._claim_now = False
            due = None
            claimed: list[Delivery] = []
            try:
                if self._presence is None:  # leases name this worker: an id of its own
                    self._presence = await enrol(self.db)
                if not self._presence.held:  # and it claims only while seen alive
                    await asyncio.to_thread(self._presence.check)
                if not woken:  # a poll or a nudge: a cheap read first, a claim only when due
                    due = await self.db.read(next_due)
                if woken or (due is not None and due <= time.time()):
                    claimed = await self._claim(self._presence.owner)
                await self._update_depth()
            except Exception:  # the store is unavailable: try again on the next poll
                log.exception("claiming deliveries failed")
            if claimed:
                woken = True  # a full batch may have left more behind
                continue
            wait = self.poll
            if due is not None and due > time.time():
                wait = min(wait, due - time.time())
            woken = await self._sleep(wait)

    async def _sleep(self, seconds: float) -> bool:
        """Wait for a wake-up, a nudge or ``seconds``; tell whether to claim at once."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
        # cancellation that stop() sends when the event fires at that moment.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.01)):
                await self._wake.wait()
        return self._claim_now

    def _free(self) -> dict[str, int]:
        return {
            channel: sender.concurrency - self.inflight[channel]
            for channel, sender in self.outbox.senders.items()
        }

    async def _claim(self, owner: int) -> list[Delivery]:
        free = self._free()
        if not any(slots > 0 for slots in free.values()):
            return []
        per_target = {c: s.per_target for c, s in self.outbox.senders.items()}
        claimed = await self.db.write(
            # copies: the job runs on the writer thread while tasks finish here
            partial(
                claim,
                free=free,
                per_target=per_target,
                busy=Counter(self.busy),
                lease=self.lease,
                owner=owner,
                sending={delivery.id for delivery in self._sending.values()},
            )
        )
        for delivery in claimed:
            self._sending[delivery.attempt_id] = delivery
            self.inflight[delivery.channel] += 1
            self.busy[(delivery.channel, delivery.target)] += 1
            task = asyncio.create_task(self._deliver(delivery), name=delivery.message_id)
            self._tasks.add(task)
            task.add_done_callback(partial(self._done, delivery))
        return claimed

    def _done(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._sending.pop(delivery.attempt_id, None)
        self.inflight[delivery.channel] -= 1
        key = (delivery.channel, delivery.target)
        self.busy[key] -= 1
        if self.busy[key] <= 0:
            del self.busy[key]
        self.wake()  # a slot is free

    async def _deliver(self, delivery: Delivery) -> None:
        sender = self.outbox.senders[delivery.channel]
        started = time.monotonic()
        try:
            result = await sender.send(delivery)
        except asyncio.CancelledError:
            await self._finish(delivery, Result("retry", error="the worker stopped"), started)
            raise
        except Exception as exc:
            log.exception("sending %s failed unexpectedly", delivery.message_id)
            result = Result("retry", error=f"internal error: {type(exc).__name__}")
        await self._finish(delivery, result, started)

    async def _finish(self, delivery: Delivery, result: Result, started: float) -> None:
        """Queue the result for the next batch and wait until it is recorded."""
        duration_ms = int((time.monotonic() - started) * 1000)
        recorded: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._ended.append((Done(delivery, result, duration_ms), recorded))
        self._results.set()
        state = await recorded
        if state is None:  # not recorded: once the lease lapses, this worker tries it again
            return
        label = "retry" if state == "pending" else state
        self.metrics.deliveries.labels(delivery.channel, label).inc()
        if state == "dead":
            log.warning(
                "%s (%s) dead after %d attempts: %s",
                delivery.message_id,
                delivery.channel,
                delivery.attempt,
                result.error,
            )

    async def _record_loop(self) -> None:
        """Record the results ready at each moment in one write job, without waiting for the
        jobs before it (the writer commits waiting jobs together); until closed and done."""
        recording: set[asyncio.Task[None]] = set()
        while True:
            await self._results.wait()
            self._results.clear()
            if self._ended:
                batch, self._ended = self._ended, []
                task = asyncio.create_task(self._record_batch(batch))
                recording.add(task)
                task.add_done_callback(recording.discard)
            if self._closing:
                await asyncio.gather(*recording)
                return

    async def _record_batch(self, batch: list[tuple[Done, asyncio.Future[str | None]]]) -> None:
        states = await self._record([done for done, _ in batch])
        for (_, recorded), state in zip(batch, states, strict=True):
            if not recorded.done():
                recorded.set_result(state)

    async def _record(self, batch: list[Done]) -> list[str | None]:
        """Record ``batch`` in one job; if that fails, each alone (one bad result fails alone)."""
        try:
            return list(await self.db.write(self._recorder_job(batch)))
        except Exception:
            if len(batch) == 1:
                log.exception("recording the result of %s failed", batch[0].delivery.message_id)
                return [None]
        states: list[str | None] = []
        for done in batch:
            states += await self._record([done])
        return states

    def _recorder_job(self, batch: list[Done]) -> partial[list[str]]:
        # a copy of the senders: the job runs on the writer thread
        return partial(
            finish_all, done=batch, schedule=self.schedule, senders=dict(self.outbox.senders)
        )

    async def _renew_loop(self) -> None:
        """Every third of a lease, check this worker's lock and extend the leases of every
        attempt not yet recorded."""
        while True:
            await asyncio.sleep(self.lease / 3)
            if self._presence is not None:
                try:
                    await asyncio.to_thread(self._presence.check)
                except Exception:  # the leases still keep the rows a while
                    log.exception("delivery worker %d cannot hold its lock", self._presence.owner)
            if not self._sending:
                continue
            until = time.time() + self.lease
            try:
                await self.db.write(partial(renew, attempt_ids=list(self._sending), until=until))
            except Exception:  # the leases may lapse: this worker's lock still keeps the rows
                log.exception("renewing %d delivery leases failed", len(self._sending))

    async def _update_depth(self) -> None:
        if time.monotonic() - self._depth_at < DEPTH_EVERY:
            return
        self._depth_at = time.monotonic()
        counts = await self.db.read(depth)
        for channel in self.outbox.senders:
            self.metrics.queue_depth.labels(channel).set(counts.get(channel, 0))


async def _run_worker(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    worker = Worker(
        app[DB],
        app[OUTBOX],
        app[METRICS],
        schedule=settings.retry_schedule,
        timeout=settings.delivery_timeout,
        poll=POLL,
    )
    worker.start()
    try:
        async with background(worker.follow(app[BUS]), "delivery-worker-bus"):
            yield
    finally:
        await worker.stop()


def setup(app: web.Application) -> None:
    """Create the outbox and, unless ``settings.worker`` is off, run a worker in this process."""
    outbox_of(app)
    if app[SETTINGS].worker:
        app.cleanup_ctx.append(_run_worker)
