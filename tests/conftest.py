"""Shared fixtures: a real application on a real port, tokens for each role.

Time bounds in tests derive from ``TIMEOUT`` (``BROADCASTER_TEST_TIMEOUT``,
default 10 s), so a slow machine can scale them all at once.

Every test built on ``settings`` (so on ``client``) runs twice: on the
single-node SQLite store (``[sqlite]``) and as a node of a multi-node
deployment (``[postgresql]``: a fresh database in the session's private
PostgreSQL cluster, and the session's private ``redis-server``, emptied before
each test, as the bus). A test that is inherently single-node says why with
``@pytest.mark.single_backend("...")`` and runs on SQLite only. ``-k sqlite``
or ``-k postgresql`` picks one backend.

Tests are marked by what they start, from the fixtures they use (see
``RESOURCE_MARKERS``), so ``-m "not postgres"`` and the like pick a subset
without anyone remembering to mark a new test: ``postgres`` (the PostgreSQL
run of a test, or a PostgreSQL fixture), ``kannel`` (the ``kannel`` fixture)
and ``browser`` (the ``browser`` fixture, Chromium). ``slow`` is set by hand
in the modules, on tests that take over about 1 s, start a process of their
own each, or fuzz with many examples.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from kannel_gateway import StartKannel, require_kannel, running_kannel
from postgres_server import PostgresServer, running_postgres
from redis_server import RedisServer, running_redis

from broadcaster.app import create_app
from broadcaster.auth.tokens import TOKENS
from broadcaster.settings import Settings
from broadcaster.store.migrations import migrate
from broadcaster.store.pg_conn import PgConnection

TIMEOUT = float(os.environ.get("BROADCASTER_TEST_TIMEOUT", "10"))
BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "broadcaster_template"


#: Fixtures that start an outside program, and the marker of every test using one.
RESOURCE_MARKERS = {
    "postgres_session": "postgres",
    "database_url": "postgres",
    "durable_postgres": "postgres",
    "kannel": "kannel",
    "browser": "browser",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the programs they start; drop the PostgreSQL run of ``single_backend`` ones.

    A test's PostgreSQL run asks for ``database_url`` only while it runs
    (``backend_options``), so it is recognised by its parameter instead.
    """
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        on_pg = params is not None and "postgresql" in params.params.values()
        needs = {RESOURCE_MARKERS[name] for name in item.fixturenames if name in RESOURCE_MARKERS}
        for marker in sorted(needs | ({"postgres"} if on_pg else set())):
            item.add_marker(marker)
        (dropped if on_pg and item.get_closest_marker("single_backend") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def verify_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep what ``broadcaster verify`` remembers per log inside the test's own directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server (AOF, fsync always) for the whole session.

    Its process is managed from an event loop of its own in a thread: an async
    test may be the first to ask for this fixture, from inside its running loop.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="redis-session", daemon=True)
    thread.start()
    started = running_redis(tmp_path_factory.mktemp("redis"))
    server = asyncio.run_coroutine_threadsafe(started.__aenter__(), loop).result()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(started.__aexit__(None, None, None), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """The session's Redis, emptied for this test (no limits, no locks)."""
    client = redis.Redis.from_url(redis_session.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_session.url


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the whole session, with a migrated template database."""
    with running_postgres(durable=False) as server:
        template = server.create_database()
        # Synchronously: an async test may be the first to ask for this fixture,
        # from inside its running event loop.
        conn = PgConnection(psycopg.connect(template, autocommit=True))
        try:
            migrate(conn)
        finally:
            conn.close()
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {template.rsplit('/', 1)[1]} RENAME TO {TEMPLATE}")
        yield server


@pytest.fixture
def database_url(postgres_session: PostgresServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test, dropped afterwards."""
    url = postgres_session.create_database(TEMPLATE)
    yield url
    postgres_session.drop_database(url)


@pytest.fixture
def kannel() -> StartKannel:
    """Start Kannel within the test: ``async with kannel(tmp_path, mo_url=...) as lab``.

    The one way a test gets Kannel, so that it is marked ``kannel``; skips (or,
    under CI, fails) when Kannel is not installed.
    """
    require_kannel()
    return running_kannel


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store under test: ``sqlite`` (one node) or ``postgresql`` (a node of several)."""
    return str(request.param)


def backend_options(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Return the settings that put an app on ``backend`` (for fixtures building their own)."""
    if backend != "postgresql":
        return {}
    return {
        "database_url": request.getfixturevalue("database_url"),
        "redis_url": request.getfixturevalue("redis_url"),
    }


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh data directory, as a brand-new installation has them."""
    extra = backend_options(backend, request)
    return Settings.from_env(
        {}, data_dir=tmp_path / "data", public_url="http://example.test", **extra
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient]:
    """The app with default settings, served on a real loopback port."""
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def make_token(client: TestClient, role: str, name: str | None = None) -> str:
    """Create a token for ``role`` directly in the store and return it."""
    _, token = await client.app[TOKENS].create(name or f"{role}-user", "应急管理局", role)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(client: TestClient) -> dict[str, str]:
    """Authorization headers of an admin."""
    return bearer(await make_token(client, "admin", "管理员"))


@pytest.fixture
async def editor(client: TestClient) -> dict[str, str]:
    """Authorization headers of an editor."""
    return bearer(await make_token(client, "editor", "值班编辑"))


@pytest.fixture
async def reviewer(client: TestClient) -> dict[str, str]:
    """Authorization headers of a reviewer."""
    return bearer(await make_token(client, "reviewer", "审核员"))


async def create_incident(
    client: TestClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """Create an incident through the API and return it."""
    body = {"title": "崂山区沙子口街道山洪", "severity": "severe", **fields}
    response = await client.post("/api/incidents", json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def post_entry(
    client: TestClient, headers: dict[str, str], incident_id: str, **fields: Any
) -> dict[str, Any]:
    """Post an entry through the API and return it (asserting 201)."""
    body = {"body": "水位持续上涨，请沿河居民立即转移。", **fields}
    response = await client.post(
        f"/api/incidents/{incident_id}/entries", json=body, headers=headers
    )
    assert response.status == 201, await response.text()
    return await response.json()
