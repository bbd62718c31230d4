"""Test the outbox: written with the entry, leased to one worker at a time, sent from the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from test_webhooks import deliveries, loopback_settings, register, settled
from webhook_receiver import Receiver

import channels.delivery.worker
from broadcaster.app import create_app
from broadcaster.appkeys import DB, PUBLISHER
from broadcaster.metrics import Metrics
from broadcaster.settings import Settings
from broadcaster.store import outbox as outbox_store
from broadcaster.store.outbox import Delivery, claim, enqueue, renew
from broadcaster.store.pg_conn import dialect_of
from broadcaster.store.workers import Presence, enrol
from channels.delivery.outbox import MAX_RETRY_AFTER, Outbox, Result, finish_all, retry_delay
from channels.delivery.worker import Worker

settings = pytest.fixture(loopback_settings, name="settings")
T = TypeVar("T")


def count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


class StoreClock:
    """The outbox store's clock, stopped for a test: leases lapse when it is moved on.

    Leases are wall-clock times read through ``broadcaster.store.outbox.now``;
    moving that clock shows a claim a lapsed lease without the test waiting.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.moment = outbox_store.now()
        monkeypatch.setattr(outbox_store, "now", lambda: self.moment)

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


async def test_a_failed_append_leaves_no_delivery(
    client: TestClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    """A hook failing after the outbox's rolls back the entry and its deliveries together."""
    async with Receiver() as receiver:
        await register(client, admin, receiver.url)
        incident = await create_incident(client, editor)

        def explode(conn: Any, incident: Any, entry: Any) -> None:
            if dialect_of(conn) == "postgresql":
                raise psycopg.OperationalError("disk I/O error")
            raise sqlite3.OperationalError("disk I/O error")

        client.app[PUBLISHER].hooks.append(explode)
        response = await client.post(
            f"/api/incidents/{incident['id']}/entries", json={"body": "x"}, headers=editor
        )
        assert response.status == 503
        db = client.app[DB]
        assert await db.read(lambda c: count(c, "deliveries")) == 0
        assert await db.read(lambda c: count(c, "entries")) == 0


async def test_the_same_delivery_is_never_queued_twice(client: TestClient) -> None:
    """Enqueueing an existing (channel, target, event, entry) is a no-op."""

    def twice(conn: sqlite3.Connection) -> list[int]:
        return [enqueue(conn, "webhook", 7, "entry.created", "i", 1) for _ in range(2)]

    assert await client.app[DB].write(twice) == [1, 0]


async def test_a_lease_keeps_other_workers_off_until_it_expires(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leased row is not claimed again; once the lease lapses the attempt is retried."""
    db = client.app[DB]
    await db.write(lambda c: enqueue(c, "test", 1, "entry.created", "i", 1))
    clock = StoreClock(monkeypatch)

    def take(lease: float) -> Any:
        return lambda c: claim(c, {"test": 5}, {"test": 1}, Counter(), lease)

    [first] = await db.write(take(30))
    clock.advance(29)
    assert await db.write(take(30)) == []
    clock.advance(1)
    [second] = await db.write(take(30))
    assert (second.id, second.attempt) == (first.id, 2)
    assert second.message_id == first.message_id

    def outcomes(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("SELECT outcome FROM delivery_attempts ORDER BY n").fetchall()
        return [row[0] for row in rows]

    assert await db.read(outcomes) == ["interrupted", "sending"]


async def test_rows_in_flight_count_against_the_per_target_bound(client: TestClient) -> None:
    """With one of a target's rows in flight, a bound of one claims only other targets' rows."""
    db = client.app[DB]
    for target, seq in ((1, 1), (1, 2), (2, 1)):
        await db.write(lambda c, t=target, s=seq: enqueue(c, "test", t, "entry.created", "i", s))
    busy = Counter({("test", 1): 1})
    claimed = await db.write(lambda c: claim(c, {"test": 5}, {"test": 1}, busy, 30))
    assert [(d.target, d.seq) for d in claimed] == [(2, 1)]
    claimed = await db.write(lambda c: claim(c, {"test": 5}, {"test": 1}, Counter(), 30))
    assert [(d.target, d.seq) for d in claimed] == [(1, 1)]  # in order: seq 2 waits for 1


async def test_a_claim_from_a_fresh_queue_of_10000_is_quick(client: TestClient) -> None:
    """An area alert queues 10,000 SMS in one transaction; claiming from them at once (before
    the database has statistics on them) takes milliseconds, not the ~50 s of a bad plan."""
    db = client.app[DB]

    def fan_out(conn: Any) -> None:
        conn.executemany(
            "INSERT INTO deliveries (channel, target, event, incident, seq, next_at,"
            " created_at, updated_at) VALUES ('test', ?, 'entry.created', 'i', 1, ?, '', '')",
            [(target, time.time() - 1) for target in range(10_000)],
        )

    await db.write(fan_out)
    started = time.monotonic()
    claimed = await db.write(lambda c: claim(c, {"test": 32}, {"test": 1}, Counter(), 30))
    assert len(claimed) == 32
    assert time.monotonic() - started < TIMEOUT / 2


def test_retry_delays_follow_the_schedule_with_jitter_added() -> None:
    """Each delay is the scheduled one plus at most 20 %; there is none after the last."""
    schedule = (5, 30, 120)
    for attempt, base in enumerate(schedule, start=1):
        delay = retry_delay(schedule, attempt, None)
        assert delay is not None and base <= delay <= base * 1.2
    assert retry_delay(schedule, 4, None) is None
    assert retry_delay(schedule, 1, 600) == 600
    assert retry_delay(schedule, 1, 10**9) == MAX_RETRY_AFTER


async def test_the_worker_is_woken_by_the_commit_not_the_poll(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """With a 60 s poll, a delivery still leaves at once (well under a second when idle)."""
    monkeypatch.setattr(channels.delivery.worker, "POLL", 60.0)
    async with Receiver() as receiver, TestClient(TestServer(create_app(settings))) as client:
        admin = bearer(await make_token(client, "admin"))
        await register(client, admin, receiver.url)
        incident = await create_incident(client, admin)
        await client.get("/healthz")
        started = time.monotonic()
        await post_entry(client, admin, incident["id"])
        await receiver.next(TIMEOUT)
        assert time.monotonic() - started < TIMEOUT / 2  # far below the 60 s poll


async def test_payload_is_built_when_sent_so_a_redaction_wins(
    client: TestClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    """An entry redacted while its delivery waits goes out withheld, never with its text."""
    async with Receiver() as receiver:
        incident = await create_incident(client, editor)
        hook = await register(client, admin, receiver.url, events=["entry.created"])
        await client.post(f"/api/webhooks/{hook['id']}/pause", headers=admin)
        secret_text = "联系人张三 13800138000"
        await post_entry(
            client,
            editor,
            incident["id"],
            body=secret_text,
            acknowledge={"codes": ["mobile"], "reason": "测试"},
        )
        response = await client.post(
            f"/api/incidents/{incident['id']}/entries/1/redact",
            json={"basis": "政府信息公开条例第十五条", "reason": "个人信息"},
            headers=admin,
        )
        assert response.status == 201, await response.text()
        await client.post(f"/api/webhooks/{hook['id']}/resume", headers=admin)
        await settled(client, admin, hook["id"], 2, "delivered")
        bodies = [json.loads(r.body) for r in receiver.received]
        first = next(b["data"] for b in bodies if b["data"]["seq"] == 1)
        assert first["redacted"] is True and first["body"] == ""
        assert all("13800138000" not in r.text and "张三" not in r.text for r in receiver.received)


async def test_entry_redacted_event_names_the_withheld_entry(
    client: TestClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    """An endpoint subscribed to entry.redacted learns which entry to take down."""
    async with Receiver() as receiver:
        incident = await create_incident(client, editor)
        hook = await register(client, admin, receiver.url, events=["entry.redacted"])
        await post_entry(client, editor, incident["id"], body="误发内容")
        await client.post(
            f"/api/incidents/{incident['id']}/entries/1/redact",
            json={"basis": "政府信息公开条例第十五条", "reason": "误发"},
            headers=admin,
        )
        got = json.loads((await receiver.next(TIMEOUT)).body)
        assert got["type"] == "entry.redacted"
        assert (got["data"]["seq"], got["data"]["redacted"]) == (1, True)
        [delivery] = await deliveries(client, admin, hook["id"])
        assert delivery["event"] == "entry.redacted"


async def test_deliveries_left_by_a_stopped_app_are_sent_by_the_next(settings: Settings) -> None:
    """Rows committed while no worker ran are delivered when a worker starts, once each."""
    async with Receiver() as receiver:
        async with TestClient(TestServer(create_app(settings.with_(worker=False)))) as client:
            admin = bearer(await make_token(client, "admin"))
            await register(client, admin, receiver.url)
            incident = await create_incident(client, admin)
            for n in range(3):
                await post_entry(client, admin, incident["id"], body=f"第{n}条")
        assert receiver.received == []
        async with TestClient(TestServer(create_app(settings))) as client:
            admin = bearer(await make_token(client, "admin", "admin2"))
            await settled(client, admin, 1, 3, "delivered")
        seqs = sorted(json.loads(r.body)["data"]["seq"] for r in receiver.received)
        assert seqs == [1, 2, 3]


def noting_waits(worker: Worker) -> asyncio.Event:
    """Return an event set whenever ``worker`` starts waiting for a wake-up or its next poll."""
    waiting = asyncio.Event()
    sleep = worker._sleep

    async def sleep_noted(seconds: float) -> bool:
        waiting.set()  # nothing awaits in between: the worker is in its wait once this is seen
        return await sleep(seconds)

    worker._sleep = sleep_noted  # type: ignore[method-assign]
    return waiting


async def test_the_worker_stops_even_when_woken_at_that_moment(client: TestClient) -> None:
    """stop() returns promptly although a commit wakes the worker in the same instant."""
    for _ in range(20):
        worker = Worker(client.app[DB], Outbox(), Metrics(), schedule=(0,), timeout=1, poll=60)
        waiting = noting_waits(worker)
        worker.start()
        await asyncio.wait_for(waiting.wait(), TIMEOUT)
        worker.outbox.notify()
        await asyncio.wait_for(worker.stop(), TIMEOUT)


class RecordingSender:
    """A ``test`` channel sender that answers ok and remembers every message id it sent."""

    channel = "test"
    concurrency = 4
    per_target = 1

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.first = asyncio.Event()

    async def send(self, delivery: Delivery) -> Result:
        self.sent.append(delivery.message_id)
        self.first.set()
        return Result("ok")

    def settle(self, conn: Any, delivery: Delivery, result: Result, state: str) -> None:
        pass

    async def close(self) -> None:
        pass


class BusyStore:
    """The app's store, except that results and lease renewals wait for ``release``.

    This is a writer queue backlogged for longer than a lease: everything the
    worker writes after its claim waits behind other nodes' and clients' jobs.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:  # dialect, path, connect: the real store's
        return getattr(self.db, name)

    async def write(self, job: Callable[[Any], T]) -> T:
        if getattr(job, "func", None) in (finish_all, renew):
            await self.release.wait()
        return await self.db.write(job)

    async def read(self, job: Callable[[Any], T]) -> T:
        return await self.db.read(job)


async def test_a_live_worker_keeps_its_delivery_however_long_the_store_takes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a live worker's result and renewals wait past its lease, nobody sends again."""
    db = client.app[DB]
    await db.write(lambda c: enqueue(c, "test", 1, "entry.created", "i", 1))
    busy, outbox, sender = BusyStore(db), Outbox(), RecordingSender()
    outbox.senders["test"] = sender
    worker = Worker(busy, outbox, Metrics(), schedule=(0,), timeout=1, poll=60)
    worker.lease = 0.3
    worker.start()
    try:
        await asyncio.wait_for(sender.first.wait(), TIMEOUT)
        StoreClock(monkeypatch).advance(1)  # three leases, renewals still waiting on the store
        # Another node's worker claiming now finds the row still held by the live sender.
        assert await db.write(lambda c: claim(c, {"test": 5}, {"test": 1}, Counter(), 30)) == []
    finally:
        busy.release.set()
        await worker.stop()

    def attempts(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT d.state, a.outcome FROM deliveries d"
            " JOIN delivery_attempts a ON a.delivery = d.id ORDER BY a.n"
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    assert await db.read(attempts) == [("delivered", "ok")]
    assert sender.sent == ["msg_1"]


async def enrolled(db: Any) -> Presence:
    """Register a delivery worker and take its lock, as a starting worker does."""
    presence = await enrol(db)
    await asyncio.to_thread(presence.check)
    return presence


async def test_a_lapsed_lease_passes_from_a_dead_worker_only(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past their leases, a stopped worker's row is claimed again, a live worker's is not;
    the live worker itself takes its row back once it no longer sends it."""
    db = client.app[DB]
    for target in (1, 2):
        await db.write(lambda c, t=target: enqueue(c, "test", t, "entry.created", "i", 1))
    alive, gone, other = [await enrolled(db) for _ in range(3)]

    def take(presence: Presence, lease: float, sending: tuple[int, ...] = ()) -> Any:
        return lambda c: claim(
            c, {"test": 1}, {"test": 1}, Counter(), lease, owner=presence.owner, sending=sending
        )

    try:
        clock = StoreClock(monkeypatch)
        [kept] = await db.write(take(alive, 0.2))
        [lost] = await db.write(take(gone, 0.2))
        await asyncio.to_thread(gone.release)  # as its process dying would
        clock.advance(0.25)  # both leases lapse
        [again] = await db.write(take(other, 30))
        assert (again.id, again.attempt) == (lost.id, 2)
        assert await db.write(take(other, 30)) == []
        assert await db.write(take(alive, 30, sending=(kept.id,))) == []
        [back] = await db.write(take(alive, 30))  # e.g. recording its result failed
        assert (back.id, back.attempt) == (kept.id, 2)
    finally:
        for presence in (alive, gone, other):
            await asyncio.to_thread(presence.release)
