"""Tests for ``GET /ws/incidents/{id}``: hello, backlog then live, resume, slow clients."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import struct
import sys
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

import channels.live.hub
from broadcaster.app import create_app
from broadcaster.appkeys import METRICS, STORE
from broadcaster.auth.tokens import TOKENS
from broadcaster.settings import Settings
from channels.live.hub import HUB
from channels.live.websocket import HEARTBEAT, WebSocketSubscription
from tests.conftest import TIMEOUT, bearer, create_incident, make_token, post_entry

ROOT = Path(__file__).resolve().parent.parent


async def burst(
    client: TestClient,
    headers: dict[str, str],
    incident_id: str,
    total: int,
    marks: dict[int, asyncio.Event],
    posters: int = 6,
) -> None:
    """Post ``total`` entries from ``posters`` concurrent tasks, setting ``marks[n]`` at n."""
    done = 0

    async def poster(first: int) -> None:
        nonlocal done
        for i in range(first, total, posters):
            await post_entry(client, headers, incident_id, body=f"第{i}条：水位上涨")
            done += 1
            if done in marks:
                marks[done].set()

    await asyncio.gather(*(poster(k) for k in range(posters)))


async def entry_seqs(ws: aiohttp.ClientWebSocketResponse, until: int) -> list[int]:
    """Read entry frames until seq ``until``; return every seq seen."""
    seqs: list[int] = []
    async with asyncio.timeout(TIMEOUT):
        while not seqs or seqs[-1] < until:
            frame = await ws.receive_json()
            assert frame["type"] == "entry", frame
            seqs.append(frame["entry"]["seq"])
    return seqs


async def test_hello_frame_describes_the_incident_and_its_head(client, editor):
    """The first frame is the hello, with the incident and its current head."""
    incident = await create_incident(client, editor, title="台风“海燕”登陆")
    await post_entry(client, editor, incident["id"])
    second = await post_entry(client, editor, incident["id"])
    async with client.ws_connect(f"/ws/incidents/{incident['id']}?after=2") as ws:
        hello = await ws.receive_json(timeout=TIMEOUT)
    assert hello["type"] == "hello"
    assert hello["incident"]["id"] == incident["id"]
    assert hello["incident"]["title"] == "台风“海燕”登陆"
    assert hello["incident"]["status"] == "active"
    assert hello["head"] == {"seq": 2, "hash": second["hash"]}


async def test_clients_joining_mid_burst_get_every_seq_once_in_order(client, editor):
    """Clients connecting while entries are posted concurrently each get 1..N exactly once."""
    incident = await create_incident(client, editor)
    total = 60
    marks = {n: asyncio.Event() for n in (1, 15, 30, 45)}
    posting = asyncio.create_task(burst(client, editor, incident["id"], total, marks))
    sockets = []
    for mark in marks.values():
        async with asyncio.timeout(TIMEOUT):
            await mark.wait()
        sockets.append(await client.ws_connect(f"/ws/incidents/{incident['id']}"))
    await posting
    for ws in sockets:
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
        assert await entry_seqs(ws, total) == list(range(1, total + 1))
        await ws.close()


async def test_after_resumes_with_the_next_seq(client, editor):
    """``?after=SEQ`` sends only the entries after SEQ, then live ones."""
    incident = await create_incident(client, editor)
    for _ in range(4):
        await post_entry(client, editor, incident["id"])
    async with client.ws_connect(f"/ws/incidents/{incident['id']}?after=2") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        assert await entry_seqs(ws, 4) == [3, 4]
        await post_entry(client, editor, incident["id"], kind="status", status="resolved")
        frame = await ws.receive_json(timeout=TIMEOUT)
    assert frame["entry"]["seq"] == 5
    assert frame["entry"]["status"] == "resolved"


async def test_backlog_is_read_in_pages(client, editor, monkeypatch):
    """A long backlog is read from the store a page at a time, never all at once."""
    monkeypatch.setattr(channels.live.hub, "PAGE", 3)
    incident = await create_incident(client, editor)
    for _ in range(10):
        await post_entry(client, editor, incident["id"])
    store = client.app[STORE]
    limits: list[int | None] = []
    real_entries = store.entries

    async def spy(incident_id: str, after: int = 0, limit: int | None = None) -> Any:
        limits.append(limit)
        return await real_entries(incident_id, after, limit)

    monkeypatch.setattr(store, "entries", spy)
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        assert await entry_seqs(ws, 10) == list(range(1, 11))
    assert len(limits) >= 4
    assert all(limit is not None and limit <= 3 for limit in limits)


async def test_unknown_incident_is_a_json_404_before_upgrade(client):
    """An unknown incident answers 404 with a JSON error instead of upgrading."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/ws/incidents/no-such-incident")
    assert caught.value.status == 404
    response = await client.get(
        "/ws/incidents/no-such-incident",
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )
    assert response.status == 404
    assert (await response.json())["error"] == "incident_not_found"


async def test_bad_after_is_a_400(client, editor):
    """A non-numeric ``after`` answers 400 naming the parameter."""
    incident = await create_incident(client, editor)
    response = await client.get(f"/ws/incidents/{incident['id']}?after=abc")
    assert response.status == 400
    assert (await response.json())["field"] == "after"


async def test_binary_frame_closes_with_1003(client, editor):
    """A binary frame from the client closes the socket with 1003."""
    incident = await create_incident(client, editor)
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        await ws.send_bytes(b"\x00\x01")
        message = await ws.receive(timeout=TIMEOUT)
    assert message.type is WSMsgType.CLOSE
    assert message.data == 1003


async def test_oversized_frame_closes_with_1009(client, editor):
    """A client frame over the size limit closes the socket with 1009."""
    incident = await create_incident(client, editor)
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        await ws.send_str("x" * 100_000)
        message = await ws.receive(timeout=TIMEOUT)
    assert message.type is WSMsgType.CLOSE
    assert message.data == 1009


async def test_connections_are_counted(client, editor):
    """The connections gauge counts open WebSockets and drops when they close."""
    incident = await create_incident(client, editor)
    registry = client.app[METRICS].registry
    labels = {"transport": "websocket"}
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        assert registry.get_sample_value("broadcaster_connections", labels) == 1
    # The server counts down in the same loop turn as it answers the close.
    assert registry.get_sample_value("broadcaster_connections", labels) == 0


# -- slow clients ------------------------------------------------------------


async def stalled_socket(port: int, path: str) -> tuple[socket.socket, bytes]:
    """Open a WebSocket with a tiny receive buffer and stop reading after the handshake."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += await loop.sock_recv(sock, 1024)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def parse_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split server frames (unmasked) off ``data``; return them and the incomplete rest."""
    frames = []
    while len(data) >= 2:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        start = 2
        if size == 126:
            if len(data) < 4:
                break
            size, start = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                break
            size, start = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < start + size:
            break
        frames.append((opcode, data[start : start + size]))
        data = data[start + size :]
    return frames, data


@pytest.fixture
async def small_queue_client(settings: Settings) -> AsyncIterator[TestClient]:
    """The app with ``client_queue`` = 2 frames per client."""
    app = create_app(settings.with_(client_queue=2))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


@pytest.mark.slow
async def test_slow_client_is_closed_with_4008_and_others_keep_up(small_queue_client):
    """A client that never reads is closed with 4008; a reading client gets each entry at once."""
    client = small_queue_client
    editor = bearer(await make_token(client, "editor"))
    incident = await create_incident(client, editor)
    path = f"/ws/incidents/{incident['id']}"
    stalled, received = await stalled_socket(client.port, path)
    normal = await client.ws_connect(path)
    assert (await normal.receive_json(timeout=TIMEOUT))["type"] == "hello"
    registry = client.app[METRICS].registry
    big = "洪水" + "x" * 19_000
    posted = 0
    while not registry.get_sample_value("broadcaster_slow_clients_closed_total"):
        assert posted < 400, "the stalled client was never cut off"
        await post_entry(client, editor, incident["id"], body=big)
        posted += 1
        frame = await normal.receive_json(timeout=TIMEOUT / 2)
        assert frame["entry"]["seq"] == posted
    await post_entry(client, editor, incident["id"])
    assert (await normal.receive_json(timeout=TIMEOUT / 2))["entry"]["seq"] == posted + 1

    loop = asyncio.get_running_loop()
    frames: list[tuple[int, bytes]] = []
    async with asyncio.timeout(TIMEOUT):
        while not frames or frames[-1][0] != 0x8:
            chunk = await loop.sock_recv(stalled, 1 << 20)
            assert chunk, "connection ended without a close frame"
            received += chunk
            more, received = parse_frames(received)
            frames.extend(more)
    stalled.close()
    texts = [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
    assert texts[0]["type"] == "hello"
    seqs = [t["entry"]["seq"] for t in texts[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    code = struct.unpack("!H", frames[-1][1][:2])[0]
    assert code == 4008
    assert frames[-1][1][2:].decode().endswith(f"after={seqs[-1] if seqs else 0}")
    await normal.close()


async def test_server_shutdown_closes_with_1001(settings):
    """Stopping the server tells live clients it is going away (1001)."""
    server = TestServer(create_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        editor = bearer(await make_token_on(server))
        async with session.post(
            server.make_url("/api/incidents"),
            json={"title": "山洪", "severity": "severe"},
            headers=editor,
        ) as response:
            incident = await response.json()
        async with session.ws_connect(server.make_url(f"/ws/incidents/{incident['id']}")) as ws:
            await ws.receive_json(timeout=TIMEOUT)
            closing = asyncio.create_task(server.close())
            message = await ws.receive(timeout=TIMEOUT)
            await closing
    assert message.type is WSMsgType.CLOSE
    assert message.data == 1001


async def make_token_on(server: TestServer) -> str:
    from broadcaster.auth.tokens import TOKENS

    _, token = await server.app[TOKENS].create("编辑", "应急管理局", "editor")
    return token


async def test_invalid_utf8_text_closes_with_1007(client, editor):
    """A text frame that is not UTF-8 closes the socket with 1007."""
    incident = await create_incident(client, editor)
    async with client.ws_connect(f"/ws/incidents/{incident['id']}") as ws:
        await ws.receive_json(timeout=TIMEOUT)
        await ws.send_frame(b"\xff\xfe", WSMsgType.TEXT)
        message = await ws.receive(timeout=TIMEOUT)
    assert message.type is WSMsgType.CLOSE
    assert message.data == 1007


@pytest.fixture
async def quick_ping_client(settings: Settings) -> AsyncIterator[TestClient]:
    """The app pinging every WebSocket each 50 ms."""
    app = create_app(settings)
    app[HEARTBEAT] = 0.05
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def test_pings_reap_silent_clients_and_spare_answering_ones(quick_ping_client):
    """A client that never answers pings is dropped; one that answers stays connected."""
    client = quick_ping_client
    editor = bearer(await make_token(client, "editor"))
    incident = await create_incident(client, editor)
    path = f"/ws/incidents/{incident['id']}"
    silent, received = await stalled_socket(client.port, path)
    answering = await client.ws_connect(path)  # aiohttp answers pings while receiving
    frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read_answering() -> None:
        async for message in answering:
            frames.put_nowait(json.loads(message.data))

    reader = asyncio.create_task(read_answering())
    loop = asyncio.get_running_loop()
    opcodes = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                chunk = await loop.sock_recv(silent, 65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            more, received = parse_frames(received)
            opcodes.extend(opcode for opcode, _ in more)
    silent.close()
    assert 0x9 in opcodes  # it was pinged before being dropped
    await post_entry(client, editor, incident["id"])
    async with asyncio.timeout(TIMEOUT):
        assert (await frames.get())["type"] == "hello"
        assert (await frames.get())["entry"]["seq"] == 1
    reader.cancel()
    await answering.close()


async def test_closed_clients_are_freed_without_the_cycle_collector(settings, tmp_path):
    """Connections their clients closed leave no reference cycle behind.

    Full collections skip frozen objects (``broadcaster.gc_pauses``), so a cycle
    left by each closed connection would stay in memory until a complete pass.
    Many close at once (the benchmark's client, in a process of its own, as
    when a cell drops): aiohttp then keeps an error and its traceback for all
    but the first, unless the server lets go of them. Served as ``serve``
    does (an ``AppRunner``), where that happens.
    """
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gc.collect()
    gc.disable()
    try:
        _, token = await app[TOKENS].create("admin", "应急管理局", "admin")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            body = {"title": "崂山区沙子口街道山洪", "severity": "severe"}
            async with session.post("/api/incidents", json=body, headers=bearer(token)) as response:
                incident = await response.json()
        viewers = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.wsclient", "127.0.0.1", str(port),
            f"/ws/incidents/{incident['id']}", "20", str(tmp_path / "results"),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert viewers.stdin is not None and viewers.stdout is not None
        assert await viewers.stdout.readline() == b"connected 20 0\n"
        freed = []
        for subscription in app[HUB].all():
            assert isinstance(subscription, WebSocketSubscription)
            freed.append(asyncio.Event())
            weakref.finalize(subscription.ws, freed[-1].set)
        del subscription
        assert len(freed) == 20
        viewers.stdin.write(b"stop\n")  # they all close
        assert await viewers.stdout.readline() == b"done\n"
        await viewers.wait()
        async with asyncio.timeout(TIMEOUT):
            for event in freed:
                await event.wait()
    finally:
        gc.enable()
        await runner.cleanup()
