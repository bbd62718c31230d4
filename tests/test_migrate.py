"""``broadcaster migrate --to``: a single-node data directory moves onto PostgreSQL, verified."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry

from broadcaster.app import create_app
from broadcaster.cli import main
from broadcaster.settings import Settings


async def node(settings: Settings) -> TestClient:
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    return client


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A SQLite data directory with two incidents, a correction, a redaction and a token."""
    settings = Settings.from_env({}, data_dir=tmp_path / "data", public_url="http://x.test")
    client = await node(settings)
    try:
        admin = bearer(await make_token(client, "admin", "管理员"))
        first = (await create_incident(client, admin))["id"]
        second = (await create_incident(client, admin, title="化工厂氨气泄漏"))["id"]
        for n in range(5):
            await post_entry(client, admin, first, body=f"第{n}条通报")
        await post_entry(client, admin, first, kind="correction", corrects=2, body="更正：数字有误")
        await post_entry(client, admin, second, body="请关闭门窗")
        redacted = await client.post(
            f"/api/incidents/{first}/entries/3/redact",
            json={"basis": "政府信息公开条例第十五条", "reason": "含个人信息"},
            headers=admin,
        )
        assert redacted.status == 201, await redacted.text()
        listed = {
            incident: (await (await client.get(f"/api/incidents/{incident}/entries")).json())
            for incident in (first, second)
        }
    finally:
        await client.close()
    yield {"settings": settings, "admin": admin, "incidents": listed}


async def run(*args: str) -> int:
    """Run ``broadcaster migrate ARGS`` as the command line does (it runs its own loop)."""
    return await asyncio.to_thread(main, ["migrate", *args])


async def test_migrate_copies_everything_and_the_copy_serves_and_verifies(
    source: dict[str, Any], database_url: str, redis_url: str
) -> None:
    """After the copy a node on PostgreSQL serves the same timelines, tokens work, verify passes."""
    settings: Settings = source["settings"]
    assert await run("--to", database_url, "--data-dir", str(settings.data_dir)) == 0
    on_pg = await node(settings.with_(database_url=database_url, redis_url=redis_url))
    try:
        for incident, before in source["incidents"].items():
            after = await (await on_pg.get(f"/api/incidents/{incident}/entries")).json()
            assert after == before
            base = str(on_pg.make_url("")).rstrip("/")
            assert await asyncio.to_thread(main, ["verify", base, incident]) == 0
        first = next(iter(source["incidents"]))
        posted = await post_entry(on_pg, source["admin"], first, body="迁移后的第一条")
        assert posted["seq"] == len(source["incidents"][first]["entries"]) + 1
    finally:
        await on_pg.close()


async def test_migrate_refuses_a_target_that_is_not_empty(
    source: dict[str, Any], database_url: str
) -> None:
    """A second migration into the same database is refused and changes nothing."""
    settings: Settings = source["settings"]
    data_dir = str(settings.data_dir)
    assert await run("--to", database_url, "--data-dir", data_dir) == 0
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    assert await run("--to", database_url, "--data-dir", data_dir) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM entries").fetchone() == before


async def test_migrate_refuses_a_source_whose_chain_does_not_verify(
    source: dict[str, Any], database_url: str
) -> None:
    """A record edited in the SQLite file stops the migration before anything is written."""
    settings: Settings = source["settings"]
    with sqlite3.connect(settings.data_dir / "broadcaster.db") as conn:
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute(
            "UPDATE entries SET record = replace(record, '\"kind\": \"update\"',"
            " '\"kind\": \"status\"') WHERE seq = 1"
        )
    assert await run("--to", database_url, "--data-dir", str(settings.data_dir)) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM incidents").fetchone() == (0,)
