"""Tests for ``channels.live.hub``: ordering, gap filling, the slow-client rule, bus failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from broadcaster.app import create_app
from broadcaster.appkeys import BUS, METRICS, STORE
from broadcaster.bus import MemoryBus, RawMessage
from broadcaster.bus.message import Resubscribed, decode, encode
from broadcaster.metrics import Metrics
from broadcaster.settings import Settings
from channels.live.hub import CLOCK_EVERY, HUB, SLICE_SECONDS, Hub, Message, Subscription
from tests.conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from tests.test_sse import entry_events
from tests.test_websocket import entry_seqs


class Recorder(Subscription):
    """A subscription that records what it is sent."""

    sent: list[int]

    async def send(self, message: Message) -> None:
        self.sent.append(message.seq)


def recorder(client: TestClient, incident_id: str, after: int = 0) -> Recorder:
    hub = client.app[HUB]
    subscription = Recorder(hub, incident_id, after, hub.client_queue)
    subscription.sent = []
    return subscription


async def stored(client: TestClient, incident_id: str, seq: int) -> Message:
    entry = await client.app[STORE].entry(incident_id, seq)
    assert entry is not None
    return Message.from_entry(entry)


@asynccontextmanager
async def held_app(settings: Settings) -> AsyncIterator[tuple[TestClient, HoldingBus, Any, Any]]:
    """Yield a served app on a ``HoldingBus``, its bus, editor headers and one incident."""
    bus = HoldingBus()
    app = create_app(settings, bus=bus)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        editor = bearer(await make_token(client, "editor"))
        yield client, bus, editor, await create_incident(client, editor)


async def test_gap_is_filled_from_the_store_and_duplicates_skipped(client, editor):
    """A live seq past ``last + 1`` is preceded by the missing entries; repeats are dropped."""
    incident = await create_incident(client, editor)
    for _ in range(4):
        await post_entry(client, editor, incident["id"])
    subscription = recorder(client, incident["id"])
    subscription.stale = False  # as if the backlog (empty) had been read
    subscription.deliver(await stored(client, incident["id"], 3))
    subscription.deliver(await stored(client, incident["id"], 2))
    await subscription.pump(subscription.send)
    assert subscription.sent == [1, 2, 3]
    subscription.deliver(await stored(client, incident["id"], 3))
    subscription.deliver(await stored(client, incident["id"], 4))
    await subscription.pump(subscription.send)
    assert subscription.sent == [1, 2, 3, 4]


async def test_full_queue_drops_only_that_client(client, editor):
    """A subscription whose queue is full is dropped and counted; the others are unaffected."""
    incident = await create_incident(client, editor)
    hub = client.app[HUB]
    limit = hub.client_queue
    slow = hub.subscribe(recorder(client, incident["id"]))
    quick = hub.subscribe(recorder(client, incident["id"]))
    await slow.pump(slow.send)
    await quick.pump(quick.send)
    for seq in range(1, limit + 2):
        await hub.dispatch(Message(incident["id"], seq, '{"type":"entry","entry":{}}', 0.0))
        await quick.pump(quick.send)  # a client that keeps up
    assert quick.sent == list(range(1, limit + 2))
    assert slow.closed and slow.dropped
    assert not quick.closed
    assert hub.subscriptions[incident["id"]] == {quick}
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("broadcaster_slow_clients_closed_total") == 1


async def test_hub_remembers_the_highest_seq_it_handed_out(client, editor):
    """``latest`` holds the highest seq dispatched per followed incident, and forgets it after."""
    incident = await create_incident(client, editor)
    hub = client.app[HUB]
    subscription = hub.subscribe(recorder(client, incident["id"]))
    for seq in (2, 1):
        await hub.dispatch(Message(incident["id"], seq, '{"type":"entry","entry":{}}', 0.0))
    assert hub.latest[incident["id"]] == 2
    subscription.close()
    assert incident["id"] not in hub.latest


async def test_reordered_bus_messages_reach_a_live_client_once_in_order(settings):
    """Messages the bus delivers out of order or twice reach a live client as 1, 2, 3."""
    async with (
        held_app(settings) as (client, bus, editor, incident),
        client.ws_connect(f"/ws/incidents/{incident['id']}") as ws,
    ):
        await ws.receive_json(timeout=TIMEOUT)
        bus.holding = True
        for _ in range(3):
            await post_entry(client, editor, incident["id"])
        bus.holding = False
        for index in (2, 0, 2, 1, 0):
            await bus.publish(*bus.held[index])
        assert await entry_seqs(ws, 3) == [1, 2, 3]
        await post_entry(client, editor, incident["id"])
        assert await entry_seqs(ws, 4) == [4]


async def test_entries_lost_while_the_bus_was_down_arrive_after_it_returns(settings):
    """When the bus listener fails and reconnects, live clients resync from the store."""
    async with held_app(settings) as (client, bus, editor, incident):
        sse = await client.get(f"/api/incidents/{incident['id']}/events")
        async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
            await ws.receive_json(timeout=TIMEOUT)
            bus.holding = True  # these publications are lost
            await post_entry(client, editor, incident["id"])
            await post_entry(client, editor, incident["id"])
            bus.holding = False
            bus.fail_listeners()
            assert await entry_seqs(ws, 2) == [1, 2]
        assert await entry_events(sse, 2) == [1, 2]
        sse.close()


async def test_a_bus_that_resubscribed_makes_clients_resync(settings):
    """A ``bus:resubscribed`` message makes live clients re-read what the bus lost."""
    async with (
        held_app(settings) as (client, bus, editor, incident),
        client.ws_connect(f"/ws/incidents/{incident['id']}") as ws,
    ):
        await ws.receive_json(timeout=TIMEOUT)
        bus.holding = True  # lost while the bus was reconnecting
        await post_entry(client, editor, incident["id"])
        bus.holding = False
        await bus.publish(*encode(Resubscribed()))
        assert await entry_seqs(ws, 1) == [1]


async def test_malformed_bus_messages_are_ignored(client, editor):
    """A foreign or broken bus message does not stop the hub."""
    incident = await create_incident(client, editor)
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        await client.app[BUS].publish(f"incident:{incident['id']}", "not json\n{}")
        await client.app[BUS].publish("other-topic", "{}")
        await post_entry(client, editor, incident["id"])
        assert await entry_seqs(ws, 1) == [1]


async def test_fanout_latency_is_recorded(client, editor):
    """Each message handed to live clients adds one fan-out latency observation."""
    incident = await create_incident(client, editor)
    registry = client.app[METRICS].registry
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        await post_entry(client, editor, incident["id"])
        await entry_seqs(ws, 1)
    count = registry.get_sample_value("broadcaster_fanout_latency_seconds_count")
    assert count == 1


def test_bus_message_is_parsed_once_into_seq_and_frame():
    """A bus message gives the incident, seq, frame and publish time."""
    entry = {"incident": "a", "seq": 7, "hash": "h"}
    frame = '{"type":"entry","entry":' + json.dumps(entry) + "}"
    decoded = decode("incident:a", '{"t": 12.5}\n' + frame)
    assert not isinstance(decoded, Resubscribed)
    message = Message.from_bus(decoded)
    assert (message.incident, message.seq, message.frame, message.published) == (
        "a",
        7,
        frame,
        12.5,
    )
    assert json.loads(message.entry_json) == entry
    assert message.encoded("x", lambda m: b"1") is message.encoded("x", lambda m: b"2")


class HoldingBus(MemoryBus):
    """A memory bus that can hold publications back and break its listeners."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[tuple[str, str]] = []
        self._listeners: set[asyncio.Queue[RawMessage | None]] = set()

    async def publish(self, topic: str, message: str) -> None:
        if self.holding:
            self.held.append((topic, message))
            return
        for queue in self._listeners:
            queue.put_nowait((topic, message))

    def fail_listeners(self) -> None:
        for queue in self._listeners:
            queue.put_nowait(None)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[RawMessage]]:
        queue: asyncio.Queue[RawMessage | None] = asyncio.Queue()
        self._listeners.add(queue)

        async def drain() -> AsyncIterator[RawMessage]:
            while (item := await queue.get()) is not None:
                yield item
            raise ConnectionError("bus connection lost")

        try:
            yield drain()
        finally:
            self._listeners.discard(queue)


async def test_a_long_fanout_lets_due_work_run_after_each_slice():
    """One message to 10,000 viewers is 70-90 ms of socket writes: what comes due
    meanwhile (a request, a timer) runs after the slice under way, not after the
    next one or at the end, so the loop never stalls longer than a slice."""
    hub = Hub(None, Metrics(), 10)  # type: ignore[arg-type]  # no store: nothing is read
    now = [0.0]
    hub.clock = lambda: now[0]  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    events: list[str] = []

    class Timed(Subscription):
        """A live viewer whose socket write takes a little over 1/CLOCK_EVERY of a slice."""

        def write_live(self, message: Message) -> bool:
            now[0] += SLICE_SECONDS / CLOCK_EVERY * 1.01
            events.append("write")
            if len(events) == 1:  # something comes due during the first slice
                loop.call_at(loop.time(), events.append, "due")
            return True

    for _ in range(3 * CLOCK_EVERY):
        viewer = hub.subscribe(Timed(hub, "a", 0, 10))
        viewer.live, viewer.stale = True, False
    await hub.dispatch(Message("a", 1, "{}", 0.0))
    assert events.count("write") == 3 * CLOCK_EVERY
    assert events.index("due") == CLOCK_EVERY
