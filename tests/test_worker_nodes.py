"""Delivery workers of several nodes on one PostgreSQL: each delivery leaves once, promptly."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from test_nodes import shared_key
from test_outbox import enrolled
from test_webhooks import eventually, register, settled
from webhook_receiver import Receiver

import channels.delivery.worker
from broadcaster.app import create_app
from broadcaster.settings import Settings
from broadcaster.store.outbox import claim, enqueue
from broadcaster.store.postgres import PgDatabase
from broadcaster.store.workers import NAMESPACE, live_owners


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local webhook endpoint answering 200."""
    async with Receiver() as running:
        yield running


def node_settings(tmp_path: Path, database_url: str, redis_url: str, key: str) -> Settings:
    """Return node A's settings: the shared store and bus, loopback webhooks allowed."""
    return Settings.from_env(
        {},
        data_dir=tmp_path / "a",
        public_url="http://example.test",
        database_url=database_url,
        redis_url=redis_url,
        signing_key=key,
        webhook_allow=("127.0.0.1",),
        retry_schedule=(0, 0, 0),
        delivery_timeout=2,
    )


@pytest.fixture
async def two_nodes(
    tmp_path: Path, database_url: str, redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Nodes A and B on one database and bus; ``worker_on_a`` (indirect) says if A delivers."""
    settings = node_settings(tmp_path, database_url, redis_url, shared_key())
    a = settings.with_(worker=request.param)
    b = settings.with_(data_dir=tmp_path / "b", worker=True)
    async with AsyncExitStack() as stack:
        clients = []
        for node in (a, b):
            client = TestClient(TestServer(create_app(node), host="127.0.0.1", port=0))
            clients.append(await stack.enter_async_context(client))
        yield clients[0], clients[1]


@pytest.mark.parametrize("two_nodes", [False], indirect=True)
async def test_an_entry_queued_on_a_node_without_worker_leaves_from_another(
    two_nodes: tuple[TestClient, TestClient],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B's worker, woken by the bus (its poll is a minute), delivers A's entry at once, once."""
    monkeypatch.setattr(channels.delivery.worker, "POLL", 60.0)
    a, b = two_nodes
    admin = bearer(await make_token(a, "admin"))
    hook = await register(a, admin, receiver.url)
    incident = await create_incident(a, admin)
    started = time.monotonic()
    entry = await post_entry(a, admin, incident["id"])
    got = await receiver.next(TIMEOUT)
    assert time.monotonic() - started < TIMEOUT / 2  # far below B's 60 s poll
    assert json.loads(got.body)["data"]["seq"] == entry["seq"]
    [delivery] = await settled(a, admin, hook["id"], 1, "delivered")
    assert [attempt["outcome"] for attempt in delivery["attempts"]] == ["ok"]
    assert len(receiver.received) == 1


@pytest.mark.parametrize("two_nodes", [True], indirect=True)
async def test_workers_on_two_nodes_deliver_each_entry_once(
    two_nodes: tuple[TestClient, TestClient], receiver: Receiver
) -> None:
    """Entries posted on both nodes, with both workers running, each arrive exactly once."""
    a, b = two_nodes
    admin = bearer(await make_token(a, "admin"))
    editor_b = bearer(await make_token(b, "editor"))
    hook = await register(a, admin, receiver.url)
    incident = (await create_incident(a, admin))["id"]
    count = 30
    posters = [(a, admin), (b, editor_b)]
    await asyncio.gather(
        *(post_entry(*posters[n % 2], incident, body=f"第{n}条") for n in range(count))
    )
    found = await settled(a, admin, hook["id"], count, "delivered")
    assert all(len(delivery["attempts"]) == 1 for delivery in found)
    seqs = Counter(json.loads(r.body)["data"]["seq"] for r in receiver.received)
    assert sorted(seqs) == list(range(1, count + 1))
    assert set(seqs.values()) == {1}
    assert len({r.headers["webhook-id"] for r in receiver.received}) == count


def test_a_row_being_claimed_elsewhere_is_skipped_not_waited_for(database_url: str) -> None:
    """While one transaction holds a claimed row, a second claim passes it over at once."""
    db = PgDatabase(database_url)
    first, second = db.connect(autocommit=False), db.connect(autocommit=False)
    try:
        for target in (1, 2):
            enqueue(first, "test", target, "entry.created", "i", 1)
        first.raw.commit()
        free, per_target = {"test": 1}, {"test": 1}
        [held] = claim(first, free, per_target, Counter(), 30)  # not committed: row locked
        second.execute("SET lock_timeout = '1s'")  # a wait would fail the claim, not hang
        [other] = claim(second, free, per_target, Counter(), 30)
        assert other.id != held.id
        assert claim(second, free, per_target, Counter(), 30) == []
        second.raw.commit()
        first.raw.rollback()  # the first claim never happened: its row is due again
        [again] = claim(first, free, per_target, Counter(), 30)
        assert again.id == held.id
        first.raw.commit()
    finally:
        first.close()
        second.close()


async def test_a_worker_whose_session_was_cut_takes_its_lock_again(database_url: str) -> None:
    """A worker's lock lives in a session of its own; cut, it is taken again at the next check."""
    db = PgDatabase(database_url)
    await db.open()
    presence = await enrolled(db)

    async def alive() -> bool:
        return presence.owner in await db.read(lambda c: live_owners(c, time.time()))

    async def gone() -> bool:
        return not await alive()

    try:
        assert await alive()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = %s AND objid = %s AND objsubid = 2",
                (NAMESPACE, presence.owner),
            )
        await eventually(gone, "the cut session's lock to be dropped")
        await asyncio.to_thread(presence.check)
        assert await alive()
    finally:
        await asyncio.to_thread(presence.release)
        await db.close()
