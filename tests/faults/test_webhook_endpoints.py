"""Hostile webhook endpoints: one that never answers, one whose answer never ends.

Neither may hold up the other subscribers, and neither may make the worker
read without bound: an attempt ends at ``BROADCASTER_DELIVERY_TIMEOUT`` (body
included) and at most ``channels.webhooks.send.MAX_RESPONSE`` bytes are read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from test_webhooks import eventually
from webhook_receiver import Receiver

from broadcaster.app import create_app
from broadcaster.settings import Settings
from channels.webhooks.send import MAX_RESPONSE

DELIVERY_TIMEOUT = 1
ENTRIES = 3


class Endless:
    """An endpoint answering ``status`` with a body that never ends; counts bytes written."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.written = 0
        self.requests = 0
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        response = web.StreamResponse(status=self.status)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while True:
                await response.write(chunk)
                self.written += len(chunk)
        except (ConnectionError, RuntimeError):
            return response  # the sender hung up: exactly what we want

    async def __aenter__(self) -> Endless:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """The app with loopback endpoints allowed, a 1 s attempt timeout and quick retries."""
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        public_url="http://x.test",
        webhook_allow=("127.0.0.1",),
        retry_schedule=(1, 1, 1, 1, 1),
        delivery_timeout=DELIVERY_TIMEOUT,
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as running:
        yield running


async def register(client: TestClient, admin: dict[str, str], url: str) -> int:
    response = await client.post("/api/webhooks", json={"url": url}, headers=admin)
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def attempts(client: TestClient, admin: dict[str, str], hook: int) -> list[dict[str, Any]]:
    response = await client.get(f"/api/webhooks/{hook}/deliveries", headers=admin)
    return [a for d in (await response.json())["deliveries"] for a in d["attempts"]]


@pytest.mark.slow
async def test_a_hanging_endpoint_does_not_delay_the_others(client: TestClient) -> None:
    """While one endpoint never answers, another gets every entry now; the hung one times out."""
    admin = bearer(await make_token(client, "admin"))
    async with Receiver() as hanging, Receiver() as healthy:
        hanging.hold = asyncio.Event()  # never set while the test runs
        stuck = await register(client, admin, hanging.url)
        await register(client, admin, healthy.url)
        incident = await create_incident(client, admin)
        posted = time.monotonic()
        for _ in range(ENTRIES):
            await post_entry(client, admin, incident["id"])
        got = [await healthy.next(TIMEOUT) for _ in range(ENTRIES)]
        assert time.monotonic() - posted < DELIVERY_TIMEOUT, "the healthy endpoint waited"
        assert len({r.headers["webhook-id"] for r in got}) == ENTRIES

        async def timed_out() -> list[dict[str, Any]]:
            found = await attempts(client, admin, stuck)
            return [a for a in found if "no complete answer" in (a["error"] or "")]

        failed = await eventually(timed_out, "the hanging attempt to time out")
        assert all(a["duration_ms"] < (DELIVERY_TIMEOUT + 2) * 1000 for a in failed)


@pytest.mark.parametrize("status", [200, 500])
async def test_an_endless_answer_is_read_only_up_to_the_cap(
    client: TestClient, status: int
) -> None:
    """An endpoint streaming an endless body: the attempt ends quickly, after a capped read."""
    admin = bearer(await make_token(client, "admin"))
    async with Endless(status) as endless:
        hook = await register(client, admin, endless.url)
        incident = await create_incident(client, admin)
        await post_entry(client, admin, incident["id"])

        async def recorded() -> list[dict[str, Any]]:
            return [a for a in await attempts(client, admin, hook) if a["outcome"] != "sending"]

        [first, *_] = await eventually(recorded, "the first attempt's outcome")
        assert first["outcome"] == ("ok" if status == 200 else "retry"), first
        assert first["duration_ms"] < DELIVERY_TIMEOUT * 1000, "the body was read to a timeout"
        # What the endpoint managed to write is the cap plus socket buffers, not more.
        assert endless.written < MAX_RESPONSE + 16 * 1024 * 1024
