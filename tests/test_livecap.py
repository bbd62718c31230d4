"""Tests for ``broadcaster.web.livecap``: live-connection caps and running out of descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, create_incident, make_token
from serve_process import ServeProcess

from broadcaster.app import create_app
from broadcaster.settings import Settings
from broadcaster.web.livecap import DESCRIPTORS, LIVE_LIMITS, Descriptors, default_total

NOFILE = 256


async def released(client: TestClient, count: int) -> None:
    """Wait until exactly ``count`` live slots are held."""
    limits = client.app[LIVE_LIMITS]
    for _ in range(int(TIMEOUT / 0.01)):
        if limits.open == count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{limits.open} live slots held, expected {count}")


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[TestClient]:
    """The app with 3 live connections per client and 5 in all."""
    app = create_app(settings.with_(max_live_per_client=3, max_live=5))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


async def test_one_client_is_capped_and_a_freed_slot_is_reusable(capped: TestClient) -> None:
    """WebSocket and SSE count together per client; over the cap is 429; closing frees a slot."""
    editor = {"Authorization": "Bearer " + await make_token(capped, "editor")}
    iid = (await create_incident(capped, editor))["id"]
    first = await capped.ws_connect(f"/ws/incidents/{iid}")
    second = await capped.ws_connect(f"/ws/incidents/{iid}")
    stream = await capped.get(f"/api/incidents/{iid}/events")
    assert stream.status == 200
    over = await capped.get(f"/api/incidents/{iid}/events")
    assert over.status == 429
    assert (await over.json())["error"] == "too_many_live_connections"
    assert int(over.headers["Retry-After"]) > 0
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await capped.ws_connect(f"/ws/incidents/{iid}")
    await first.close()
    await released(capped, 2)
    again = await capped.ws_connect(f"/ws/incidents/{iid}")
    assert (await again.receive_json(timeout=TIMEOUT))["type"] == "hello"
    for ws in (second, again):
        await ws.close()
    stream.close()
    await released(capped, 0)


async def test_an_unknown_incident_holds_no_slot(capped: TestClient) -> None:
    """A refused stream (404) gives its slot back at once."""
    for _ in range(5):
        assert (await capped.get("/api/incidents/nope/events")).status == 404
    await released(capped, 0)


def test_the_total_cap_leaves_descriptors_in_reserve() -> None:
    """The default total keeps a quarter of the descriptors (at least 64) for everything else."""
    assert default_total(1024) == 768
    assert default_total(256) == 192
    assert default_total(100) == 36


def test_running_out_of_descriptors_is_logged_once_per_interval() -> None:
    """However many EMFILE errors arrive, the log gets one line per interval, with a count."""
    descriptors = Descriptors(interval=60.0)
    error = OSError(errno.EMFILE, "Too many open files")

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (),
            (OSError, error, None),
        )  # fmt: skip

    passed = [descriptors.filter(record()) for _ in range(1000)]
    assert passed.count(True) == 1 and passed[0]
    assert descriptors.exhausted()
    other = logging.LogRecord("x", logging.ERROR, __file__, 1, "something else", (), None)
    assert descriptors.filter(other)
    descriptors._last_logged -= 61  # the interval has passed
    later = record()
    assert descriptors.filter(later)
    assert "999 more like it not logged" in later.getMessage() and later.exc_info is None


async def test_readiness_degrades_while_descriptors_run_out(client: TestClient) -> None:
    """/readyz answers 503 within an interval of running out of descriptors."""
    assert (await client.get("/readyz")).status == 200
    client.app[DESCRIPTORS].note()
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["descriptors"] is False


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def _open_stream(port: int, path: str) -> tuple[asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    return writer, status


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _post(base: str, path: str, token: str, body: dict[str, object]) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return int(response.status), json.load(response)


@pytest.mark.slow
async def test_a_flood_of_streams_under_a_low_descriptor_limit_leaves_staff_working(
    tmp_path: Path,
) -> None:
    """The attack: one address opens more streams than the process has descriptors. The cap
    refuses the excess with 429, a staff post still succeeds, and when idle connections do
    exhaust the descriptors the log says so once and /readyz degrades, then nothing floods."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * NOFILE:
        pytest.skip("this test needs a hard descriptor limit of at least 512")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * NOFILE), hard))
    server = ServeProcess(tmp_path / "data", preexec_fn=_low_nofile).start(TIMEOUT * 3)
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(int(TIMEOUT / 0.05)):  # the output is read by another thread
            if server.tokens():
                break
            await asyncio.sleep(0.05)
        assert f"File descriptors: {NOFILE}." in "".join(server.lines)
        token = server.tokens()[0]
        loop = asyncio.get_running_loop()
        new = {"title": "山洪", "severity": "severe"}
        status, incident = await loop.run_in_executor(
            None, _post, server.base, "/api/incidents", token, new
        )
        assert status == 201
        iid = incident["id"]
        statuses = []
        for _ in range(NOFILE + 44):
            writer, code = await _open_stream(server.port, f"/api/incidents/{iid}/events")
            writers.append(writer)
            statuses.append(code)
        assert statuses.count(200) == default_total(NOFILE)
        assert set(statuses) == {200, 429}
        path = f"/api/incidents/{iid}/entries"
        posted = await loop.run_in_executor(None, _post, server.base, path, token, {"body": "x"})
        assert posted[0] == 201, "a staff post still goes through"
        # Idle connections are not capped: these exhaust the descriptors.
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(100)]
        for _ in range(int(TIMEOUT / 0.05)):
            if any("out of file descriptors" in line for line in server.lines):
                break
            await asyncio.sleep(0.05)
        for _, writer in idle:
            writer.close()
            await writer.wait_closed()
        assert await loop.run_in_executor(None, _get, server.base + "/api/incidents") == 200
        assert await loop.run_in_executor(None, _get, server.base + "/readyz") == 503
        log = "".join(server.lines)
        assert 1 <= log.count("out of file descriptors") <= 2  # at most one per 10 s
        assert len(log) < 20_000, "the log did not flood"
    finally:
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
        server.stop()
