"""Slow and stalled clients cannot exhaust the server or hold up anyone else.

* A slowloris trickling request headers is closed after ``keepalive_timeout``
  (``broadcaster.cli.serve.SERVE_LIMITS``, shortened here) while other requests are
  answered at once.
* WebSocket readers that never read, and SSE readers that never read, are cut
  off once ``BROADCASTER_CLIENT_QUEUE`` frames wait for them (WebSocket: close
  4008), the server's memory stays bounded, and a reader that keeps up gets
  every entry. These run against a real ``broadcaster serve`` process, whose
  RSS is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import TIMEOUT
from serve_process import ServeProcess
from test_webhooks import eventually

from broadcaster.app import create_app
from broadcaster.cli.serve import SERVE_LIMITS
from broadcaster.settings import Settings
from faults.clients import Follower, gapless

KEEPALIVE = 1.0
QUEUE = 16
STALLED = 20
ENTRIES = 200
CACHES = 16 * 1024 * 1024
BODY = "沿河低洼地带群众请立即转移。" * 400  # about 17 KB of UTF-8 per entry


# -- slowloris ---------------------------------------------------------------------------------


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[str]:
    """The app served as ``serve`` does, the keep-alive timeout cut to ``KEEPALIVE``."""
    limits = {k: v for k, v in SERVE_LIMITS.items() if k != "backlog"}
    limits["keepalive_timeout"] = KEEPALIVE
    settings = Settings.from_env({}, data_dir=tmp_path / "data", public_url="http://x.test")
    runner = web.AppRunner(create_app(settings), access_log=None, **limits)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=SERVE_LIMITS["backlog"])
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def trickle(port: int, trickling: asyncio.Queue[None]) -> float:
    """Send a request's headers a few bytes at a time, never ending them; return when cut off.

    Puts one item in ``trickling`` once its first header line has been sent.
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    announced = False
    try:
        writer.write(b"GET /api/incidents HTTP/1.1\r\nHost: x\r\n")
        while True:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            if not announced:
                trickling.put_nowait(None)
                announced = True
            try:  # the trickle's pace: a line every 0.1 s, unless the server hangs up first
                if await asyncio.wait_for(reader.read(1024), 0.1) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()


@pytest.mark.slow
async def test_slowloris_is_closed_and_others_are_served(limited: str) -> None:
    """Fifty header-trickling connections are closed after the timeout; others get answers."""
    port = int(limited.rsplit(":", 1)[1])
    async with asyncio.timeout(TIMEOUT * 3), aiohttp.ClientSession() as session:
        trickling: asyncio.Queue[None] = asyncio.Queue()
        slow = [asyncio.create_task(trickle(port, trickling)) for _ in range(50)]
        for _ in slow:
            await trickling.get()
        for _ in range(20):
            started = time.monotonic()
            async with session.get(f"{limited}/api/incidents") as response:
                assert response.status == 200
            assert time.monotonic() - started < KEEPALIVE / 2, "a slow client held others up"
        lasted = await asyncio.gather(*slow)
    assert all(KEEPALIVE * 0.9 <= t < KEEPALIVE + 1 for t in lasted), lasted


# -- stalled readers on a real server ----------------------------------------------------------


async def until(predicate: Callable[[], bool], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeProcess]:
    """``broadcaster serve`` with a per-client queue of ``QUEUE`` frames."""
    monkeypatch.setenv("BROADCASTER_CLIENT_QUEUE", str(QUEUE))
    server = ServeProcess(tmp_path / "data").start(TIMEOUT * 3)
    try:
        yield server
    finally:
        server.stop()


def stalled_socket(port: int, request: bytes) -> socket.socket:
    """Open a connection with a tiny receive buffer, send ``request``, and never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def drain(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """Read until the server ends the connection; return the bytes and whether it did."""
    sock.settimeout(seconds)
    chunks = []
    try:
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return b"".join(chunks), False
    return b"".join(chunks), True


async def setup_incident(server: ServeProcess, session: aiohttp.ClientSession) -> str:
    body = {"title": "积压测试", "severity": "severe"}
    async with session.post(f"{server.base}/api/incidents", json=body) as response:
        return str((await response.json())["id"])


async def post_burst(server: ServeProcess, session: aiohttp.ClientSession, incident: str) -> None:
    url = f"{server.base}/api/incidents/{incident}/entries"
    for n in range(ENTRIES):
        async with session.post(url, json={"body": f"{n} {BODY}"}) as response:
            assert response.status == 201, await response.text()


async def metric(server: ServeProcess, session: aiohttp.ClientSession, sample: str) -> float:
    """Return the value of ``sample`` (name and labels) on the server's /metrics, 0 if absent."""
    async with session.get(f"{server.base}/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def slow_clients_closed(server: ServeProcess, session: aiohttp.ClientSession) -> float:
    return await metric(server, session, "broadcaster_slow_clients_closed_total")


async def live_connections(server: ServeProcess, session: aiohttp.ClientSession) -> float:
    """Return how many live connections (WebSocket and SSE) the server has taken on."""
    return sum(
        [
            await metric(server, session, f'broadcaster_connections{{transport="{transport}"}}')
            for transport in ("websocket", "sse")
        ]
    )


def ws_close_code(data: bytes) -> int | None:
    """Return the code of the WebSocket close frame in a server's answer ``data``, if any."""
    pos = data.find(b"\r\n\r\n") + 4
    while 3 <= pos + 2 <= len(data):
        length, head = data[pos + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if data[pos] & 0x0F == 8 and pos + head + 2 <= len(data):
            return int.from_bytes(data[pos + head : pos + head + 2], "big")
        pos += head + length
    return None


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_readers_that_never_read_are_cut_off(serve: ServeProcess, transport: str) -> None:
    """Stalled readers are dropped (WebSocket: 4008), RSS stays bounded, a live reader gets all."""
    headers = {"Authorization": f"Bearer {serve.tokens()[0]}"}
    async with aiohttp.ClientSession(headers=headers) as session, asyncio.timeout(TIMEOUT * 6):
        incident = await setup_incident(serve, session)
        if transport == "websocket":
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /ws/incidents/{incident} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        else:
            request = f"GET /api/incidents/{incident}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()

        async def all_live() -> bool:  # the stalled clients and the follower
            return await live_connections(serve, session) == STALLED + 1

        stalled = [stalled_socket(serve.port, request) for _ in range(STALLED)]
        follower = Follower(serve.port, incident)
        task = asyncio.create_task(follower.run(asyncio.Semaphore(1)))
        try:
            await eventually(all_live, "every stalled client and the follower live")
            before = rss_bytes(serve.process.pid)  # type: ignore[union-attr]
            closed_before = await slow_clients_closed(serve, session)
            await post_burst(serve, session, incident)
            grown = rss_bytes(serve.process.pid) - before  # type: ignore[union-attr]
            # Read now, before the grace period ends and the server aborts them.
            draining = asyncio.gather(*(asyncio.to_thread(drain, s, TIMEOUT * 2) for s in stalled))
            await until(lambda: gapless(follower, ENTRIES), "the live reader", TIMEOUT)
            closed = await slow_clients_closed(serve, session) - closed_before
            received = await draining
        finally:
            follower.stop()
            task.cancel()
            for sock in stalled:
                sock.close()
    assert gapless(follower, ENTRIES), "the reader that keeps up missed entries"
    assert follower.connects == 1, "the reader that keeps up was cut off"
    assert closed == STALLED, f"{closed} of {STALLED} stalled readers were cut off"
    # Caches (SQLite pages, entries, feeds) take about 12 MiB in this burst with no
    # stalled reader; each stalled one may hold its queue, never the whole burst.
    frame = len(BODY.encode()) + 1024
    bounded = CACHES + STALLED * (QUEUE + 2) * frame * 3
    unbounded = CACHES + STALLED * ENTRIES * frame
    assert grown < min(bounded, unbounded / 2), f"RSS grew {grown >> 20} MiB"
    for data, ended in received:
        assert ended, "the server never ended a stalled reader's connection"
        if transport == "websocket":
            assert ws_close_code(data) in (4008, None)  # None: aborted after the grace period
    if transport == "websocket":
        assert any(ws_close_code(d) == 4008 for d, _ in received), "nobody was told 4008"
