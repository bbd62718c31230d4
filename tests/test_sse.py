"""Tests for ``GET /api/incidents/{id}/events``: format, order, resume, heartbeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from broadcaster.app import create_app
from broadcaster.appkeys import METRICS
from broadcaster.settings import Settings
from channels.live.hub import HUB
from channels.live.sse import HEARTBEAT
from tests.conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from tests.test_websocket import burst


async def read_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Read one event (lines up to a blank line); comments are kept under ``":"``."""
    event: dict[str, str] = {}
    async with asyncio.timeout(TIMEOUT):
        while True:
            line = (await response.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line == "":
                if event:
                    return event
                continue
            name, _, value = line.partition(":")
            event[name or ":"] = value.removeprefix(" ")


async def entry_events(response: aiohttp.ClientResponse, until: int) -> list[int]:
    """Read events until the entry with seq ``until``; return their ids."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < until:
        event = await read_event(response)
        if event.get("event") == "entry":
            assert json.loads(event["data"])["seq"] == int(event["id"])
            seqs.append(int(event["id"]))
    return seqs


async def test_event_carries_seq_name_and_entry_json(client, editor):
    """Each entry is ``id:`` seq, ``event: entry``, ``data:`` the entry as the API serves it."""
    incident = await create_incident(client, editor)
    posted = await post_entry(client, editor, incident["id"], body="第一行\n\n第二段")
    response = await client.get(f"/api/incidents/{incident['id']}/events")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert 1000 <= int((await read_event(response))["retry"]) <= 5000
    event = await read_event(response)
    response.close()
    assert event["id"] == "1"
    assert event["event"] == "entry"
    assert json.loads(event["data"]) == posted


async def test_clients_joining_mid_burst_get_every_seq_once_in_order(client, editor):
    """SSE clients connecting during concurrent posts each get 1..N exactly once."""
    incident = await create_incident(client, editor)
    total = 45
    marks = {n: asyncio.Event() for n in (1, 20, 35)}
    posting = asyncio.create_task(burst(client, editor, incident["id"], total, marks))
    streams = []
    for mark in marks.values():
        async with asyncio.timeout(TIMEOUT):
            await mark.wait()
        streams.append(await client.get(f"/api/incidents/{incident['id']}/events"))
    await posting
    for response in streams:
        assert await entry_events(response, total) == list(range(1, total + 1))
        response.close()


async def test_last_event_id_resumes_and_wins_over_after(client, editor):
    """``Last-Event-ID`` resumes after that seq even when the URL still says ``after=0``."""
    incident = await create_incident(client, editor)
    for _ in range(5):
        await post_entry(client, editor, incident["id"])
    response = await client.get(
        f"/api/incidents/{incident['id']}/events?after=0", headers={"Last-Event-ID": "3"}
    )
    assert await entry_events(response, 5) == [4, 5]
    await post_entry(client, editor, incident["id"])
    assert await entry_events(response, 6) == [6]
    response.close()


async def test_after_resumes(client, editor):
    """``?after=SEQ`` starts with the entry after SEQ."""
    incident = await create_incident(client, editor)
    for _ in range(3):
        await post_entry(client, editor, incident["id"])
    response = await client.get(f"/api/incidents/{incident['id']}/events?after=1")
    assert await entry_events(response, 3) == [2, 3]
    response.close()


async def test_bad_last_event_id_is_a_400(client, editor):
    """A ``Last-Event-ID`` that is not a seq answers 400 with its own code."""
    incident = await create_incident(client, editor)
    response = await client.get(
        f"/api/incidents/{incident['id']}/events", headers={"Last-Event-ID": "1; DROP"}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_last_event_id"


async def test_unknown_incident_is_a_404(client):
    """An unknown incident answers a JSON 404, not an empty stream."""
    response = await client.get("/api/incidents/nope/events")
    assert response.status == 404
    assert (await response.json())["error"] == "incident_not_found"


@pytest.fixture
async def quick_heartbeat_client(settings: Settings) -> AsyncIterator[TestClient]:
    """The app with an SSE heartbeat every 50 ms."""
    app = create_app(settings)
    app[HEARTBEAT] = 0.05
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def test_heartbeat_comment_arrives_when_idle(quick_heartbeat_client):
    """An idle stream carries a comment line after the heartbeat interval."""
    client = quick_heartbeat_client
    editor = bearer(await make_token(client, "editor"))
    incident = await create_incident(client, editor)
    response = await client.get(f"/api/incidents/{incident['id']}/events")
    await read_event(response)  # retry hint
    assert await read_event(response) == {":": "heartbeat"}
    await post_entry(client, editor, incident["id"])
    assert await entry_events(response, 1) == [1]
    response.close()


def test_default_heartbeat_is_under_20_seconds(settings):
    """The contract asks for a heartbeat at least every 20 s."""
    assert create_app(settings)[HEARTBEAT] < 20


async def test_live_events_reach_an_http_1_0_stream(client, editor):
    """A stream that cannot be chunked (HTTP/1.0) gets live events as bare bytes, in order."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    path = f"/api/incidents/{incident['id']}/events"
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and b"Transfer-Encoding" not in head
        assert await reader.readuntil(b"id: 1\n")
        for _ in range(3):
            await post_entry(client, editor, incident["id"])
        ids = []
        while len(ids) < 3:
            line = await reader.readline()
            assert line.startswith((b"id: ", b"event: ", b"data: ", b"\n")), line  # no chunking
            if line.startswith(b"id: "):
                ids.append(int(line[4:]))
    writer.close()
    assert ids == [2, 3, 4]


async def test_dropped_stream_says_where_to_resume_and_ends(client, editor):
    """A stream cut off as too slow ends with a comment naming its last seq, then closes."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    response = await client.get(f"/api/incidents/{incident['id']}/events")
    assert await entry_events(response, 1) == [1]
    (subscription,) = client.app[HUB].subscriptions[incident["id"]]
    subscription.drop()
    assert await read_event(response) == {":": "too slow: reconnect with Last-Event-ID 1"}
    async with asyncio.timeout(TIMEOUT):
        assert await response.content.read() == b""
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("broadcaster_slow_clients_closed_total") == 1
