"""Kill -9 during a write burst: every acknowledged entry survives, and the chain verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import TIMEOUT
from serve_process import ServeProcess, cli

pytestmark = pytest.mark.slow

BURST = 300
KILL_AFTER = 60


async def post_all(base: str, token: str, incident: str, server: ServeProcess) -> dict[int, str]:
    """Post a burst and SIGKILL the server once ``KILL_AFTER`` answers came back 201."""
    acked: dict[int, str] = {}
    killed = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base}/api/incidents/{incident}/entries"

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        try:
            async with session.post(url, json={"body": f"第{n}次通报"}, headers=headers) as r:
                entry: dict[str, Any] = await r.json()
                if r.status == 201:
                    acked[entry["seq"]] = entry["hash"]
        except (TimeoutError, aiohttp.ClientError):
            return  # the server died under this request: it was never acknowledged
        if len(acked) >= KILL_AFTER and not killed.is_set():
            killed.set()
            server.kill()

    timeout = aiohttp.ClientTimeout(total=TIMEOUT * 3)
    connector = aiohttp.TCPConnector(limit=24)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(one(session, n) for n in range(BURST)))
    assert killed.is_set(), "the burst ended before the server was killed"
    return acked


async def test_every_acknowledged_entry_survives_sigkill(tmp_path: Path) -> None:
    """After SIGKILL mid-burst and a restart, every 201 entry is there (same seq, same hash)."""
    data = tmp_path / "data"
    server = await asyncio.to_thread(ServeProcess(data).start, TIMEOUT * 3)
    (token,) = server.tokens()
    headers = {"Authorization": f"Bearer {token}"}
    incident_body = {"title": "崂山区山洪", "severity": "extreme"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(server.base + "/api/incidents", json=incident_body) as response,
    ):
        incident = (await response.json())["id"]
    try:
        acked = await post_all(server.base, token, incident, server)
    finally:
        server.kill()
    assert len(acked) < BURST, "every post was answered: the kill came too late to test anything"

    again = await asyncio.to_thread(ServeProcess(data).start, TIMEOUT * 3)
    try:
        url = f"{again.base}/api/incidents/{incident}/entries"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            stored = {e["seq"]: e["hash"] for e in (await response.json())["entries"]}
        assert {seq: stored.get(seq) for seq in acked} == acked
        assert sorted(stored) == list(range(1, len(stored) + 1))
        result = await asyncio.to_thread(cli, "verify", again.base, incident)
        assert result.returncode == 0, result.stdout + result.stderr
        assert again.tokens() == [], "a second start must not print another admin token"
    finally:
        again.stop()
