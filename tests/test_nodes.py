"""Several nodes on one PostgreSQL and one Redis, in one process: one site, all viewers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_sse import entry_events, read_event
from test_websocket import entry_seqs

from broadcaster.app import create_app
from broadcaster.appkeys import BUS, STORE
from broadcaster.bus_message import EntryMessage, decode
from broadcaster.cli import main
from broadcaster.settings import Settings
from broadcaster.signing import b64url

Nodes = list[TestClient]


def shared_key() -> str:
    return b64url(Ed25519PrivateKey.generate().private_bytes_raw())


@pytest.fixture
async def nodes(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Nodes]:
    """Three nodes (A, B, C), each with its own data directory, sharing the store, Redis, a key."""
    key = shared_key()
    clients: list[TestClient] = []
    try:
        for name in "abc":
            settings = Settings.from_env(
                {},
                data_dir=tmp_path / name,
                public_url="http://example.test",
                database_url=database_url,
                redis_url=redis_url,
                signing_key=key,
            )
            client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
            await client.start_server()
            clients.append(client)
        yield clients
    finally:
        for client in clients:
            await client.close()


async def test_a_post_on_a_reaches_websocket_on_b_and_sse_on_c_in_order(nodes: Nodes) -> None:
    """Entries posted on A (some before, some while B and C connect) arrive on both, in order."""
    a, b, c = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    for i in range(5):
        await post_entry(a, editor, incident, body=f"连接前第{i}条")
    ws = await b.ws_connect(f"/ws/incidents/{incident}?after=0")
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
    sse = await c.get(f"/api/incidents/{incident}/events?after=0")
    await read_event(sse)  # the retry: line
    posts = [post_entry(a, editor, incident, body=f"连接后第{i}条") for i in range(25)]
    await asyncio.gather(*posts)
    assert await entry_seqs(ws, 30) == list(range(1, 31))
    assert await entry_events(sse, 30) == list(range(1, 31))
    await ws.close()
    sse.close()


async def test_fifty_concurrent_posts_on_two_nodes_make_one_gapless_chain(nodes: Nodes) -> None:
    """50 posts racing on A and B get seqs 1..50 once each, and the chain verifies on C."""
    a, b, c = nodes
    editor_a = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor_a))["id"]
    editor_b = bearer(await make_token(b, "editor", "B 编辑"))
    posted = await asyncio.gather(
        *(post_entry(node, head, incident, body=f"第{i}条") for i in range(25) for node, head in
          ((a, editor_a), (b, editor_b)))
    )  # fmt: skip
    assert sorted(e["seq"] for e in posted) == list(range(1, 51))
    listed = await (await c.get(f"/api/incidents/{incident}/entries")).json()
    assert [e["hash"] for e in listed["entries"]] == [
        e["hash"] for e in sorted(posted, key=lambda e: e["seq"])
    ]
    base = str(c.make_url("")).rstrip("/")
    assert await asyncio.to_thread(main, ["verify", base, incident]) == 0


async def test_a_token_made_on_a_works_on_b_at_once(nodes: Nodes) -> None:
    """A token created on A authenticates the next request on B and C."""
    a, b, c = nodes
    token = bearer(await make_token(a, "editor"))
    for node in (b, c):
        response = await node.post(
            "/api/incidents", json={"title": "山洪", "severity": "severe"}, headers=token
        )
        assert response.status == 201, await response.text()


async def test_a_draft_held_on_a_is_approved_on_b(nodes: Nodes) -> None:
    """Two-person review across nodes: a reviewer on B approves a draft held on A."""
    a, b, c = nodes
    editor = bearer(await make_token(a, "editor"))
    reviewer = bearer(await make_token(a, "reviewer"))
    incident = (await create_incident(a, editor, require_approval=True))["id"]
    held = await a.post(
        f"/api/incidents/{incident}/entries", json={"body": "待审核的通报"}, headers=editor
    )
    assert held.status == 202, await held.text()
    draft = (await held.json())["draft_id"]
    approved = await b.post(f"/api/drafts/{draft}/approve", headers=reviewer)
    assert approved.status == 201, await approved.text()
    entries = (await (await c.get(f"/api/incidents/{incident}/entries")).json())["entries"]
    assert [(e["body"], e["approved_by"]["name"]) for e in entries] == [
        ("待审核的通报", "reviewer-user")
    ]


async def test_an_incident_made_on_a_can_be_followed_on_b_at_once(nodes: Nodes) -> None:
    """A viewer sent to B right after A created the incident gets it, not a 404."""
    a, b, _ = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    assert (await b.get(f"/api/incidents/{incident}")).status == 200
    ws = await b.ws_connect(f"/ws/incidents/{incident}?after=0")
    hello = await ws.receive_json(timeout=TIMEOUT)
    assert hello["type"] == "hello" and hello["incident"]["id"] == incident
    await ws.close()


async def test_search_on_b_finds_what_was_posted_on_a(nodes: Nodes) -> None:
    """The search index is written with the entry: B finds A's text at once."""
    a, b, _ = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    await post_entry(a, editor, incident, body="沙子口街道转移安置点已开放")
    found = await (await b.get("/api/search", params={"q": "安置点"})).json()
    assert [(r["incident"], r["seq"]) for r in found["results"]] == [(incident, 1)]


async def test_bus_messages_come_after_the_commit(nodes: Nodes) -> None:
    """Whatever a node's bus delivers, the store already holds (feeds keyed by head stay right)."""
    a, b, _ = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    seen: list[tuple[int, int]] = []
    async with b.app[BUS].listen() as messages:
        for i in range(10):
            await post_entry(a, editor, incident, body=f"第{i}条")
        async with asyncio.timeout(TIMEOUT):
            while len(seen) < 10:
                message = decode(*await anext(messages))
                if isinstance(message, EntryMessage) and message.incident == incident:
                    head = await b.app[STORE].head(incident)
                    seen.append((message.seq, head.seq if head else 0))
    assert [seq for seq, _ in seen] == list(range(1, 11))
    assert all(head >= seq for seq, head in seen)


async def test_an_entry_lost_by_pub_sub_reaches_viewers_when_the_node_resubscribes(
    nodes: Nodes, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's subscription loses a message, then reconnects: B's viewer gets it, unprompted."""
    a, b, _ = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    await post_entry(a, editor, incident, body="第一条")
    ws = await b.ws_connect(f"/ws/incidents/{incident}?after=0")
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
    assert await entry_seqs(ws, 1) == [1]
    bus = b.app[BUS]
    handle = bus._handle  # type: ignore[attr-defined]
    lost = asyncio.Event()

    def lossy(message: dict[str, object]) -> None:
        if message["type"] == "pmessage" and not lost.is_set():
            lost.set()  # as if it was published while B was not subscribed
            return
        handle(message)

    monkeypatch.setattr(bus, "_handle", lossy)
    await post_entry(a, editor, incident, body="B 未收到的消息")
    await asyncio.wait_for(lost.wait(), TIMEOUT)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:  # drop the subscriptions: redis-py subscribes again at once
        await admin.client_kill_filter(_type="pubsub")
    finally:
        await admin.aclose()
    assert await entry_seqs(ws, 2) == [2]
    await ws.close()


async def test_an_entry_lost_by_pub_sub_reaches_viewers_from_the_store(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's bus silently loses a message and stays subscribed: B's viewer gets it from the store."""
    a, b, _ = nodes
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    ws = await b.ws_connect(f"/ws/incidents/{incident}?after=0")
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
    bus = b.app[BUS]
    handle = bus._handle  # type: ignore[attr-defined]
    lost = asyncio.Event()

    def lossy(message: dict[str, object]) -> None:
        if message["type"] == "pmessage" and not lost.is_set():
            lost.set()
            return
        handle(message)

    monkeypatch.setattr(bus, "_handle", lossy)
    sent = asyncio.get_running_loop().time()
    await post_entry(a, editor, incident, body="B 的总线丢失的消息")
    assert await entry_seqs(ws, 1) == [1]
    assert lost.is_set()
    assert asyncio.get_running_loop().time() - sent < 5
    await ws.close()
