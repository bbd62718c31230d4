"""The Redis bus against a real redis-server: fan-out between nodes, sharing, faults, readyz."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis_server import POLL, TIMEOUT, RedisServer, running_redis

from broadcaster.app import create_app
from broadcaster.appkeys import BUS
from broadcaster.bus import RawMessage
from broadcaster.bus_message import Resubscribed, encode
from broadcaster.redis_bus import RedisBus
from broadcaster.settings import Settings


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private redis-server for this test."""
    async with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """Two connected buses on one server, as two web nodes have them."""
    a, b = RedisBus(redis_server.url), RedisBus(redis_server.url)
    try:
        await a.connect()
        await b.connect()
        assert a.subscribed and b.subscribed
        yield a, b
    finally:
        await a.close()
        await b.close()


async def take(stream: AsyncIterator[RawMessage], count: int) -> list[RawMessage]:
    async with asyncio.timeout(TIMEOUT):
        return [await anext(stream) for _ in range(count)]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, for at most TIMEOUT (there is no event to await)."""
    for _ in range(int(TIMEOUT / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}")


async def test_message_from_one_node_reaches_both_nodes_in_order(
    nodes: tuple[RedisBus, RedisBus],
) -> None:
    """Concurrent publishes on node A reach listeners on A and B, every one, in call order."""
    a, b = nodes
    sent = [(f"incident:{i % 3}", f'{{"n": {i}, "body": "水位上涨"}}') for i in range(60)]
    async with a.listen() as on_a, b.listen() as on_b:
        await asyncio.gather(*(a.publish(topic, message) for topic, message in sent))
        assert await take(on_b, len(sent)) == sent
        assert await take(on_a, len(sent)) == sent


async def test_listeners_in_one_process_share_one_redis_subscription(
    redis_server: RedisServer, nodes: tuple[RedisBus, RedisBus]
) -> None:
    """Three listeners on node A and one on node B make two Redis subscribers, not four."""
    a, b = nodes
    admin = Redis.from_url(redis_server.url)
    try:
        async with a.listen() as l1, a.listen() as l2, a.listen() as l3, b.listen() as l4:
            subscribers = [c for c in await admin.client_list() if int(c["psub"]) > 0]
            assert len(subscribers) == 2
            await b.publish("incident:x", "hello")
            for stream in (l1, l2, l3, l4):
                assert await take(stream, 1) == [("incident:x", "hello")]
    finally:
        await admin.aclose()


async def test_bus_reconnects_after_redis_is_killed_and_restarted(
    redis_server: RedisServer, nodes: tuple[RedisBus, RedisBus]
) -> None:
    """While Redis is down ping() is False and publish raises, its own node still hears the
    message; after the restart both nodes say they resubscribed and delivery resumes."""
    a, b = nodes

    async def both_down() -> bool:
        return not await a.ping() and not await b.ping()

    async def both_up() -> bool:
        return await a.ping() and await b.ping()

    async with a.listen() as on_a, b.listen() as on_b:
        await redis_server.kill()
        await until(both_down, "ping() to turn False on both nodes")
        with pytest.raises((RedisConnectionError, ConnectionError)):
            await a.publish("incident:x", "only A hears this")
        assert await take(on_a, 1) == [("incident:x", "only A hears this")]
        await redis_server.restart()
        await until(both_up, "both nodes to resubscribe")
        await a.publish("incident:x", "back")
        assert await take(on_b, 2) == [encode(Resubscribed()), ("incident:x", "back")]
        assert await take(on_a, 2) == [encode(Resubscribed()), ("incident:x", "back")]


async def test_frozen_redis_is_detected_by_the_heartbeat(redis_server: RedisServer) -> None:
    """A server frozen by SIGSTOP loses the subscription, which comes back after SIGCONT."""
    bus = RedisBus(redis_server.url, heartbeat=TIMEOUT / 50)
    await bus.connect()
    try:

        async def unsubscribed() -> bool:
            return not bus.subscribed

        async with bus.listen() as stream:
            redis_server.pause()
            await until(unsubscribed, "the heartbeat to give up on the connection")
            redis_server.resume()
            await until(bus.ping, "the bus to resubscribe")
            await bus.publish("incident:x", "thawed")
            assert await take(stream, 2) == [encode(Resubscribed()), ("incident:x", "thawed")]
    finally:
        await bus.close()


async def test_node_started_while_redis_is_down_comes_up_degraded_then_ready(
    redis_server: RedisServer,
) -> None:
    """connect() returns after connect_timeout with Redis down, and the bus subscribes later."""
    await redis_server.kill()
    bus = RedisBus(redis_server.url, connect_timeout=TIMEOUT / 20)
    try:
        await bus.connect()
        assert not await bus.ping()
        await redis_server.restart()
        await until(bus.ping, "the bus to subscribe")
    finally:
        await bus.close()


async def test_injected_client_is_used_instead_of_the_url(redis_server: RedisServer) -> None:
    """A bus given a client talks through it, whatever its URL says."""
    client = Redis.from_url(redis_server.url)
    bus = RedisBus("redis://unused.invalid:1/0", client=client, prefix="other:")
    try:
        await bus.connect()
        async with bus.listen() as stream:
            await client.publish("other:incident:y", "via client")
            assert await take(stream, 1) == [("incident:y", "via client")]
        assert await bus.ping()
    finally:
        await bus.close()
        await client.aclose()


async def test_app_with_redis_url_publishes_on_redis_and_reports_readiness(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With BROADCASTER_REDIS_URL the app fans out over Redis; readyz is 200, 503 once killed."""
    settings = Settings.from_env(
        {"BROADCASTER_REDIS_URL": redis_server.url},
        data_dir=tmp_path / "data",
        public_url="http://example.test",
    )
    app = create_app(settings)
    assert isinstance(app[BUS], RedisBus)
    other_node = RedisBus(redis_server.url)
    await other_node.connect()
    try:
        async with (
            TestClient(TestServer(app, host="127.0.0.1", port=0)) as client,
            other_node.listen() as stream,
        ):
            ready = await client.get("/readyz")
            assert ready.status == 200
            checks = (await ready.json())["checks"]
            assert checks == {"store": True, "bus": True, "descriptors": True}

            editor = bearer(await make_token(client, "editor"))
            incident = await create_incident(client, editor)
            entry = await post_entry(client, editor, incident["id"])
            [(topic, message)] = await take(stream, 1)
            assert topic == f"incident:{incident['id']}"
            assert json.loads(message.split("\n", 1)[1])["entry"]["hash"] == entry["hash"]

            await redis_server.kill()

            async def degraded() -> bool:
                response = await client.get("/readyz")
                return response.status == 503 and (await response.json()) == {
                    "status": "degraded",
                    "checks": {"store": True, "bus": False, "descriptors": True},
                }

            await until(degraded, "/readyz to answer 503 degraded")
    finally:
        await other_node.close()
