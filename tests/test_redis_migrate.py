"""``broadcaster migrate-redis``: a single-node directory becomes the shared log, and verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry

from broadcaster.app import create_app
from broadcaster.cli import main
from broadcaster.errors import ConfigError
from broadcaster.settings import Settings
from broadcaster.signing import b64url


def served(settings: Settings) -> TestClient:
    return TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))


async def verify(client: TestClient, incident: str) -> int:
    base = str(client.make_url("")).rstrip("/")
    return await asyncio.to_thread(main, ["verify", base, incident])


async def test_a_migrated_directory_serves_the_same_verified_timeline(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """After migrate-redis a node on an empty directory serves the same heads; verify exits 0."""
    old = Settings.from_env({}, data_dir=tmp_path / "old", public_url="http://x.test")
    async with served(old) as single:
        admin = bearer(await make_token(single, "admin"))
        incident = (await create_incident(single, admin))["id"]
        for n in range(5):
            await post_entry(single, admin, incident, body=f"第{n}次通报：安置点开放")
        redact = {"basis": "政府信息公开条例第十五条", "reason": "个人信息"}
        response = await single.post(
            f"/api/incidents/{incident}/entries/2/redact", json=redact, headers=admin
        )
        assert response.status == 201, await response.text()
        before = await (await single.get(f"/api/incidents/{incident}")).json()
        assert await verify(single, incident) == 0

    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    assert main(["migrate-redis", "--data-dir", str(old.data_dir), "--print-signing-key"]) == 0
    printed = capsys.readouterr().out
    key = b64url((old.data_dir / "signing.key").read_bytes())
    assert f"BROADCASTER_SIGNING_KEY={key}" in printed

    new = Settings.from_env(
        {}, data_dir=tmp_path / "new", public_url="http://x.test", redis_url=redis_url,
        signing_key=key,
    )  # fmt: skip
    async with served(new) as node:
        after = await (await node.get(f"/api/incidents/{incident}")).json()
        assert after["head"] == before["head"]
        assert await verify(node, incident) == 0
        found = await (await node.get("/api/search", params={"q": "安置点"})).json()
        assert sorted(r["seq"] for r in found["results"]) == [1, 3, 4, 5]  # 2 was redacted
        entry = await post_entry(node, admin, incident, body="迁移后的第一条")  # the old token
        assert entry["seq"] == before["head"]["seq"] + 1
        assert await verify(node, incident) == 0


async def test_migrating_into_a_log_that_is_not_empty_is_refused(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A second migration (or one after nodes wrote) exits 2 and appends nothing."""
    old = Settings.from_env({}, data_dir=tmp_path / "old", public_url="http://x.test")
    async with served(old) as single:
        await make_token(single, "admin")
    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    assert main(["migrate-redis", "--data-dir", str(old.data_dir)]) == 0
    assert main(["migrate-redis", "--data-dir", str(old.data_dir)]) == 2
    assert "not empty" in capsys.readouterr().err


async def test_a_node_with_another_signing_key_refuses_to_start(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migrated directory's key is recorded; a node signing with another key stops at once."""
    old = Settings.from_env({}, data_dir=tmp_path / "old", public_url="http://x.test")
    async with served(old) as single:
        await make_token(single, "admin")
    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    assert main(["migrate-redis", "--data-dir", str(old.data_dir)]) == 0
    stranger = Settings.from_env(
        {}, data_dir=tmp_path / "stranger", public_url="http://x.test", redis_url=redis_url
    )
    with pytest.raises(ConfigError, match="BROADCASTER_SIGNING_KEY"):
        async with served(stranger):
            pass


async def test_a_replica_copies_back_into_an_emptied_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis lost everything: the node refuses to start, and its replica migrates back whole."""
    first = Settings.from_env(
        {}, data_dir=tmp_path / "a", public_url="http://x.test", redis_url=redis_url
    )
    async with served(first) as node:
        admin = bearer(await make_token(node, "admin"))
        incident = (await create_incident(node, admin))["id"]
        for n in range(3):
            await post_entry(node, admin, incident, body=f"第{n}条")
        before = await (await node.get(f"/api/incidents/{incident}")).json()
    redis.Redis.from_url(redis_url).flushall()
    with pytest.raises(ConfigError, match="migrate-redis"):
        async with served(first):
            pass
    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    assert main(["migrate-redis", "--data-dir", str(first.data_dir)]) == 0
    again = first.with_(data_dir=tmp_path / "b", signing_key=key_of(first))
    async with served(again) as node:
        after = await (await node.get(f"/api/incidents/{incident}")).json()
        assert after["head"] == before["head"]
        assert await verify(node, incident) == 0


def key_of(settings: Settings) -> str:
    return b64url((settings.data_dir / "signing.key").read_bytes())
