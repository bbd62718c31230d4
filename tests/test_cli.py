"""The ``broadcaster`` command line: first start, tokens, configuration errors."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from conftest import TIMEOUT, bearer
from serve_process import ROOT, ServeProcess, cli

from broadcaster.settings import Settings


async def status_of(method: str, url: str, token: str, json: object = None) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=json) as response,
    ):
        return response.status


@pytest.mark.slow
async def test_first_start_prints_one_working_admin_token(tmp_path: Path) -> None:
    """A brand-new data directory gets one admin token, printed once, and a private key file."""
    data = tmp_path / "data"
    first = await asyncio.to_thread(ServeProcess(data).start, TIMEOUT * 3)
    try:
        (token,) = first.tokens()
        assert await status_of("GET", first.base + "/metrics", token) == 200
        assert stat.S_IMODE((data / "signing.key").stat().st_mode) == 0o600
    finally:
        first.stop()
    second = await asyncio.to_thread(ServeProcess(data).start, TIMEOUT * 3)
    try:
        assert second.tokens() == []
        assert await status_of("GET", second.base + "/metrics", token) == 200
    finally:
        second.stop()


@pytest.mark.slow
async def test_token_create_prints_a_token_that_works(tmp_path: Path) -> None:
    """``token create`` prints one token line; it authenticates with the role it was given."""
    data = tmp_path / "data"
    result = await asyncio.to_thread(
        cli, "token", "create", "--name", "张三", "--department", "宣传科", "--role", "editor",
        "--data-dir", str(data),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (token,) = result.stdout.split()
    assert token.startswith("bct_")
    server = await asyncio.to_thread(ServeProcess(data).start, TIMEOUT * 3)
    try:
        assert server.tokens() == [], "the directory already had a token: no admin token"
        body = {"title": "崂山区山洪", "severity": "severe"}
        assert await status_of("POST", server.base + "/api/incidents", token, json=body) == 201
        assert await status_of("GET", server.base + "/metrics", token) == 403
    finally:
        server.stop()


@pytest.mark.slow
async def test_token_commands_work_on_the_configured_store(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``token create``, ``list`` and ``revoke`` act on SQLite or on BROADCASTER_DATABASE_URL."""
    if settings.database_url:
        monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    data = str(settings.data_dir)
    created = await asyncio.to_thread(
        cli, "token", "create", "--name", "李四", "--department", "宣传科", "--role", "editor",
        "--data-dir", data,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    (token,) = created.stdout.split()
    body = {"title": "崂山区山洪", "severity": "severe"}
    assert (await client.post("/api/incidents", json=body, headers=bearer(token))).status == 201
    listed = await asyncio.to_thread(cli, "token", "list", "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if "李四" in line]
    token_id, role, *_, state = line.split("\t")
    assert (role, state) == ("editor", "active")
    revoked = await asyncio.to_thread(cli, "token", "revoke", token_id, "--data-dir", data)
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.post("/api/incidents", json=body, headers=bearer(token))).status == 401
    again = await asyncio.to_thread(cli, "token", "revoke", token_id, "--data-dir", data)
    assert again.returncode == 1 and "already revoked" in again.stderr


async def test_token_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    """An unknown role is refused by the command line and nothing is printed as a token."""
    result = await asyncio.to_thread(
        cli, "token", "create", "--name", "x", "--department", "y", "--role", "root",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "bct_" not in result.stdout and "role" in result.stderr


async def test_a_bad_setting_stops_serve_naming_the_variable(tmp_path: Path) -> None:
    """A bad BROADCASTER_* value stops ``serve`` at start with one line naming the variable."""
    env = {**os.environ, "BROADCASTER_DATA_DIR": str(tmp_path), "BROADCASTER_PORT": "eighty"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "broadcaster.cli", "serve"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT * 3,
    )  # fmt: skip
    assert result.returncode == 2
    assert "BROADCASTER_PORT" in result.stderr and "Traceback" not in result.stderr
