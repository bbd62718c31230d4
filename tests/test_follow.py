"""Tests for ``broadcaster follow``: live printing, resuming after a restart, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from broadcaster.app import create_app
from broadcaster.auth.tokens import TOKENS
from broadcaster.cli.follow import CannotFollow, follow, format_entry, plain_text, ws_url
from broadcaster.settings import Settings
from tests.conftest import TIMEOUT, create_incident, post_entry


class Lines:
    """A text stream that hands each complete line to a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.queue.put_nowait(line)
        return len(text)

    def flush(self) -> None:
        return None

    async def next(self) -> str:
        async with asyncio.timeout(TIMEOUT):
            return await self.queue.get()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start(settings: Settings, port: int) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def api(server: TestServer, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.make_url(path), json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        return await response.json()


async def test_follow_prints_new_entries_and_resumes_after_a_restart(settings):
    """Entries posted after it starts are printed; after a server restart it resumes, no gap."""
    port = free_port()
    server = await start(settings, port)
    _, token = await server.app[TOKENS].create("值班编辑", "青岛市应急管理局", "editor")
    incident = await api(server, "/api/incidents", {"title": "山洪", "severity": "severe"}, token)
    entries = f"/api/incidents/{incident['id']}/entries"
    out, err = Lines(), Lines()
    task = asyncio.create_task(
        follow(f"http://127.0.0.1:{port}", incident["id"], out=out, err=err, first_delay=0.05)
    )
    try:
        assert (await out.next()).startswith("== 山洪")
        await api(server, entries, {"body": "**水位**上涨"}, token)
        line = await out.next()
        assert line.startswith("#1 ") and "update  青岛市应急管理局  水位上涨" in line
        await server.close()
        assert "reconnecting" in await err.next()
        server = await start(settings, port)
        await api(server, entries, {"body": "第二条"}, token)
        await api(server, entries, {"body": "第三条"}, token)
        assert (await out.next()).startswith("#2 ")
        assert (await out.next()).startswith("#3 ")
        assert out.queue.empty()
    finally:
        task.cancel()
        await server.close()


async def test_unknown_incident_cannot_be_followed(client):
    """Following an incident the server does not have stops with a clear error."""
    with pytest.raises(CannotFollow, match="no incident"):
        await follow(str(client.make_url("/")), "nope", out=Lines(), err=Lines())


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_cli_follow_exits_cleanly_on_ctrl_c(client, editor):
    """``broadcaster follow`` prints live entries and exits 0 without a traceback on SIGINT."""
    incident = await create_incident(client, editor, title="台风")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broadcaster.cli",
        "follow",
        str(client.make_url("/")),
        incident["id"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Ctrl-C as in a terminal: a suite started in the background by a
        # non-interactive shell passes SIGINT on ignored, which would hide it.
        preexec_fn=_default_sigint,
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            assert (await process.stdout.readline()).decode().startswith("== 台风")
            await post_entry(client, editor, incident["id"], body="请勿靠近河道")
            line = (await process.stdout.readline()).decode()
            assert line.startswith("#1 ") and "请勿靠近河道" in line
            process.send_signal(signal.SIGINT)
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"Traceback" not in stderr


def test_entry_line_has_no_tags_or_control_characters():
    """A printed entry shows plain text; escape sequences cannot reach the terminal."""
    entry = {
        "seq": 4,
        "posted_at": "2026-11-26T06:03:05.123Z",
        "kind": "correction",
        "author": {"name": "x", "department": "气象台\x1b[2J"},
        "html": "<p>更正：<strong>12</strong>人\x1b]0;pwned\x07</p>\n<p>第二段</p>",
    }
    line = format_entry(entry)
    assert "\x1b" not in line and "\x07" not in line
    assert line.startswith("#4  ")
    assert "correction  气象台 [2J  更正：12人 ]0;pwned 第二段" in line
    assert plain_text("a &lt;b&gt; &amp; c") == "a <b> & c"


async def test_reconnect_waits_are_jittered_under_a_doubling_cap():
    """With the server unreachable, each wait is at most 0.5 s doubled per failure, and 30 s."""
    waits: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 10:
            raise Stop

    with pytest.raises(Stop):
        await follow(f"http://127.0.0.1:{free_port()}", "a", err=io.StringIO(), sleep=sleep)
    assert all(0 <= wait <= min(30, 0.5 * 2**n) for n, wait in enumerate(waits))
    assert max(waits) > 0.5  # the cap doubled at least once (all ten under it: p < 1e-8)


def test_ws_url_maps_schemes_and_keeps_the_path():
    """The WebSocket URL follows the base URL's scheme and path prefix."""
    assert ws_url("https://example.gov.cn/live/", "a-1", 7) == (
        "wss://example.gov.cn/live/ws/incidents/a-1?after=7"
    )
    assert ws_url("http://127.0.0.1:8080", "a", 0) == "ws://127.0.0.1:8080/ws/incidents/a?after=0"
    with pytest.raises(CannotFollow):
        ws_url("ftp://example", "a", 0)
