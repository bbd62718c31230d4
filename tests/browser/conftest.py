"""Browser fixtures: Debian's chromium through Playwright, the app on a real loopback port.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``. The
app runs in the test's own event loop (``web.AppRunner``), so a test can stop
and restart it on the same port and data directory, as an operator would.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright, expect

from broadcaster.app import create_app
from broadcaster.auth.tokens import TOKENS
from broadcaster.settings import Settings
from tests.conftest import TIMEOUT

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

expect.set_options(timeout=TIMEOUT * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """The whole app on 127.0.0.1:port; ``stop``/``start`` keep the port and the data."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings.from_env(
            {}, data_dir=data_dir, public_url=self.url, port=self.port
        )
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    async def start(self) -> None:
        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def token(self, role: str = "editor") -> str:
        assert self.app is not None
        _, token = await self.app[TOKENS].create("值班编辑", "崂山区应急管理局", role)
        return token

    async def call(self, method: str, path: str, token: str, body: Any) -> Any:
        """Call the JSON API as a client would and return the decoded answer."""
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            assert response.status in (200, 201, 202), await response.text()
            return await response.json()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The app served on a real port for the browser."""
    live = LiveServer(tmp_path / "data")
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless (skipped if it is not installed)."""
    if not HAVE_CHROMIUM:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()
