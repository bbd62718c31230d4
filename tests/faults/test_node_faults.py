"""Break a multi-node deployment on purpose: a node, PostgreSQL, Redis, a delivery worker.

Every node is a real ``broadcaster serve`` / ``broadcaster worker`` process
or a full app on a loopback port, all sharing one PostgreSQL database, one
private redis-server and one signing key. The tests that crash PostgreSQL
start a cluster of their own with ``fsync`` on (the session's shared cluster
trades crash safety for speed), and the failover test gives it a synchronous
standby, promoted as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from postgres_server import PostgresServer, running_postgres
from redis_server import RedisServer, running_redis
from serve_process import ServeProcess
from test_webhooks import eventually
from test_worker_crash import Processes, free_port
from webhook_receiver import Receiver

from broadcaster.app import create_app
from broadcaster.appkeys import BUS
from broadcaster.cli import main
from broadcaster.log.signing import b64url
from broadcaster.settings import Settings
from faults.clients import Follower, gapless

pytestmark = pytest.mark.slow

FOLLOWERS = 40
ENTRIES = 40
Start = Callable[[str, str, str], Awaitable[TestClient]]


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until TIMEOUT: the state of other processes has no event to await."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def key() -> str:
    return b64url(Ed25519PrivateKey.generate().private_bytes_raw())


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test alone, for tests that kill it."""
    async with running_redis(tmp_path / "redis") as server:
        yield server


async def test_viewers_of_a_killed_node_resume_on_another_without_a_gap(
    tmp_path: Path, database_url: str, redis_url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL node A mid-burst: its WebSocket viewers reconnect to B and get 1..N once each."""
    monkeypatch.setenv("BROADCASTER_DATABASE_URL", database_url)
    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    monkeypatch.setenv("BROADCASTER_SIGNING_KEY", key)
    a = await asyncio.to_thread(ServeProcess(tmp_path / "a").start, TIMEOUT * 3)
    b = await asyncio.to_thread(ServeProcess(tmp_path / "b").start, TIMEOUT * 3)
    (token,) = a.tokens()
    assert b.tokens() == [], "the second node did not find the first node's admin in the store"
    followers: list[Follower] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        async with (
            asyncio.timeout(TIMEOUT * 6),
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        ):
            body = {"title": "节点故障演练", "severity": "severe"}
            async with http.post(f"{b.base}/api/incidents", json=body) as response:
                incident = (await response.json())["id"]
            gate = asyncio.Semaphore(FOLLOWERS)
            followers = [Follower(a.port, incident, pause=0.2) for _ in range(FOLLOWERS)]
            tasks = [asyncio.create_task(f.run(gate)) for f in followers]
            await until(lambda: all(f.connects == 1 for f in followers), "viewers on A")
            posted = 0

            async def poster(start: int) -> None:
                nonlocal posted
                for n in range(start, ENTRIES, 4):
                    url = f"{b.base}/api/incidents/{incident}/entries"
                    async with http.post(url, json={"body": f"第{n}条"}) as response:
                        assert response.status == 201, await response.text()
                    posted += 1
                    if posted == ENTRIES // 3:
                        for follower in followers:
                            follower.port = b.port  # what the load balancer does next
                        await asyncio.to_thread(a.kill)

            await asyncio.gather(*(poster(k) for k in range(4)))
            await until(lambda: all(f.last == ENTRIES for f in followers), "resumption on B")
    finally:
        for follower in followers:
            follower.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        a.kill()
        b.stop()
    broken = [f for f in followers if not gapless(f, ENTRIES)]
    assert not broken, f"{len(broken)} viewers got {list(broken[0].seqs)}"
    assert all(f.connects >= 2 for f in followers), "a viewer never moved to B"


@pytest.fixture
async def node_on(tmp_path: Path, key: str) -> AsyncIterator[Start]:
    """Start in-process nodes on a given store and Redis; all are closed at the end."""
    started: list[TestClient] = []

    async def start(name: str, database_url: str, redis_url: str) -> TestClient:
        settings = Settings.from_env(
            {},
            data_dir=tmp_path / name,
            public_url="http://x.test",
            database_url=database_url,
            redis_url=redis_url,
            signing_key=key,
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        await client.start_server()
        started.append(client)
        return client

    try:
        yield start
    finally:
        for client in started:
            await client.close()


@pytest.fixture
def durable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test alone, with fsync on, for tests that crash it."""
    with running_postgres(durable=True) as server:
        yield server


class Burst:
    """Post from a few concurrent posters until stopped; remember every 201 and every refusal."""

    def __init__(self, nodes: list[TestClient], editor: dict[str, str], incident: str) -> None:
        self.nodes = nodes
        self.editor = editor
        self.incident = incident
        self.acknowledged: dict[int, str] = {}
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, posters: int = 4) -> None:
        self.tasks = [asyncio.create_task(self._post(k)) for k in range(posters)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def _post(self, k: int) -> None:
        node = self.nodes[k % len(self.nodes)]
        n = 0
        while not self.stop.is_set():
            n += 1
            url = f"/api/incidents/{self.incident}/entries"
            try:
                response = await node.post(url, json={"body": f"{k}-{n}"}, headers=self.editor)
                body = await response.json()
            except aiohttp.ClientError:
                continue
            self.statuses[response.status] += 1
            if response.status == 201:
                self.acknowledged[body["seq"]] = body["hash"]
            else:
                self.codes[body["error"]] += 1
                await asyncio.sleep(0.01)  # a refused post is retried, as an editor would


async def assert_every_acknowledged_entry_kept(
    nodes: list[TestClient], incident: str, acknowledged: dict[int, str]
) -> None:
    """Every node serves a gapless chain holding every acknowledged entry, and it verifies."""
    for node in nodes:
        listed = await (await node.get(f"/api/incidents/{incident}/entries")).json()
        stored = {e["seq"]: e["hash"] for e in listed["entries"]}
        assert sorted(stored) == list(range(1, len(stored) + 1))
        lost = [seq for seq, digest in acknowledged.items() if stored.get(seq) != digest]
        assert not lost, f"acknowledged entries lost or changed: {lost}"
        base = str(node.make_url("")).rstrip("/")
        assert await asyncio.to_thread(main, ["verify", base, incident]) == 0


async def test_acknowledged_entries_survive_a_postmaster_sigkill(
    durable_postgres: PostgresServer, redis_url: str, node_on: Start
) -> None:
    """kill -9 PostgreSQL mid-burst: posts answer 503 meanwhile, and every 201 survives."""
    url = durable_postgres.create_database()
    a = await node_on("a", url, redis_url)
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    burst = Burst([a], editor, incident)
    burst.start()
    await until(lambda: len(burst.acknowledged) >= 30, "posts before the crash")
    await asyncio.to_thread(durable_postgres.kill)
    await until(lambda: burst.statuses[503] >= 3, "refusals while PostgreSQL is down")
    await asyncio.to_thread(durable_postgres.start)
    count = len(burst.acknowledged)
    await until(lambda: len(burst.acknowledged) >= count + 30, "posts after the restart")
    await burst.finish()
    assert set(burst.statuses) <= {201, 503}, burst.statuses
    assert set(burst.codes) <= {"storage_error"}, burst.codes
    fresh = await node_on("fresh", url, redis_url)
    await assert_every_acknowledged_entry_kept([a, fresh], incident, burst.acknowledged)


async def test_failover_to_a_synchronous_standby_loses_and_forks_nothing(
    durable_postgres: PostgresServer, redis_url: str, node_on: Start
) -> None:
    """Kill the primary mid-burst on two nodes, promote the standby: no 201 lost, one chain."""
    primary = durable_postgres
    url = primary.create_database()
    standby = await asyncio.to_thread(primary.add_standby)
    name = url.rsplit("/", 1)[1]
    both = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{name}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    a = await node_on("a", both, redis_url)
    b = await node_on("b", both, redis_url)
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    burst = Burst([a, b], editor, incident)
    burst.start()
    await until(lambda: len(burst.acknowledged) >= 30, "posts before the failover")
    await asyncio.to_thread(primary.kill)
    await asyncio.to_thread(standby.promote)
    count = len(burst.acknowledged)
    await until(lambda: len(burst.acknowledged) >= count + 30, "posts after the failover")
    await burst.finish()
    assert set(burst.statuses) <= {201, 503}, burst.statuses
    assert set(burst.codes) <= {"storage_error", "store_read_only"}, burst.codes
    await assert_every_acknowledged_entry_kept([a, b], incident, burst.acknowledged)


async def test_with_redis_down_writes_go_on_and_every_nodes_viewers_keep_up(
    database_url: str, private_redis: RedisServer, node_on: Start
) -> None:
    """SIGKILL Redis: posts still answer 201, and viewers on both nodes get them within 5 s."""
    a = await node_on("a", database_url, private_redis.url)
    b = await node_on("b", database_url, private_redis.url)
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    viewers = [await node.ws_connect(f"/ws/incidents/{incident}?after=0") for node in (a, b)]
    for ws in viewers:
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
    await private_redis.kill()
    loop = asyncio.get_running_loop()
    for seq in (1, 2, 3):
        posted = loop.time()
        response = await a.post(
            f"/api/incidents/{incident}/entries", json={"body": f"第{seq}条"}, headers=editor
        )
        assert response.status == 201, await response.text()
        for ws in viewers:
            frame = await ws.receive_json(timeout=TIMEOUT)
            assert frame["entry"]["seq"] == seq
            assert loop.time() - posted < 5, "a viewer waited over 5 s with Redis down"
    await private_redis.restart()
    await until(lambda: all(n.app[BUS].subscribed for n in (a, b)), "both nodes resubscribed")
    posted = loop.time()
    await a.post(f"/api/incidents/{incident}/entries", json={"body": "恢复后"}, headers=editor)
    for ws in viewers:
        assert (await ws.receive_json(timeout=TIMEOUT))["entry"]["seq"] == 4
    assert loop.time() - posted < 1, "delivery did not return to sub-second with Redis back"
    for ws in viewers:
        await ws.close()


@pytest.fixture
def node_procs(
    tmp_path: Path, database_url: str, redis_url: str, key: str
) -> Iterator[Processes]:
    """Commands in multi-node mode: each process gets its own data directory by name."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(
        BROADCASTER_DATABASE_URL=database_url,
        BROADCASTER_REDIS_URL=redis_url,
        BROADCASTER_SIGNING_KEY=key,
        BROADCASTER_HOST="127.0.0.1",
        BROADCASTER_PORT=str(port),
        BROADCASTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        BROADCASTER_WEBHOOK_ALLOW="127.0.0.1",
        BROADCASTER_RETRY_SCHEDULE="0,0,0,0,0",
        BROADCASTER_DELIVERY_TIMEOUT="1",
    )
    processes = Processes(env, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


async def test_a_worker_on_another_node_completes_a_killed_workers_deliveries(
    node_procs: Processes, tmp_path: Path
) -> None:
    """SIGKILL a worker mid-delivery: a worker on another node sends everything, ids unchanged."""
    procs = node_procs
    data = {name: str(tmp_path / name) for name in ("web", "w1", "w2")}
    made = await asyncio.to_thread(
        main_output,
        procs,
        data["web"],
        "token", "create", "--name", "ops", "--department", "应急局", "--role", "admin",
    )  # fmt: skip
    headers = {"Authorization": "Bearer " + made}
    base = procs.env["BROADCASTER_PUBLIC_URL"]
    procs.start("web", "serve", BROADCASTER_WORKER="0", BROADCASTER_DATA_DIR=data["web"])
    first = procs.start("w1", "worker", BROADCASTER_DATA_DIR=data["w1"])
    async with Receiver() as receiver, aiohttp.ClientSession(base_url=base) as http:

        async def up() -> bool:
            try:
                async with http.get("/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, "broadcaster serve to answer\n" + procs.output())
        receiver.hold = asyncio.Event()
        async with http.post("/api/webhooks", json={"url": receiver.url}, headers=headers) as r:
            assert r.status == 201, await r.text()
        body = {"title": "崂山区山洪", "severity": "severe"}
        async with http.post("/api/incidents", json=body, headers=headers) as response:
            incident = (await response.json())["id"]
        for n in range(3):
            path = f"/api/incidents/{incident}/entries"
            async with http.post(path, json={"body": f"第{n}条"}, headers=headers) as response:
                assert response.status == 201
        await asyncio.wait_for(receiver.holding.wait(), TIMEOUT)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
        in_flight = len(receiver.received)
        hold, receiver.hold = receiver.hold, None
        hold.set()
        started = time.monotonic()
        procs.start("w2", "worker", BROADCASTER_DATA_DIR=data["w2"])

        async def all_delivered() -> list[dict[str, object]] | None:
            async with http.get("/api/webhooks/1/deliveries", headers=headers) as response:
                found = (await response.json())["deliveries"]
            done = len(found) == 3 and all(d["state"] == "delivered" for d in found)
            return found if done else None

        deliveries = await eventually(all_delivered, "delivery by the other node's worker")
        assert time.monotonic() - started < TIMEOUT
    seen: dict[str, set[int]] = {}
    for request in receiver.received:
        seen.setdefault(request.headers["webhook-id"], set()).add(
            json.loads(request.body)["data"]["seq"]
        )
    assert sorted(s for seqs in seen.values() for s in seqs) == [1, 2, 3]
    assert all(len(seqs) == 1 for seqs in seen.values())
    outcomes = [[a["outcome"] for a in d["attempts"]] for d in deliveries]  # type: ignore[index]
    assert in_flight >= 1 and sum(o[0] == "interrupted" for o in outcomes) >= in_flight
    assert all(o[-1] == "ok" for o in outcomes)


def main_output(procs: Processes, data_dir: str, *args: str) -> str:
    """Run ``broadcaster ARGS`` in ``procs``'s environment; return its standard output."""
    done = subprocess.run(
        procs.command(*args),
        env={**procs.env, "BROADCASTER_DATA_DIR": data_dir},
        capture_output=True,
        check=True,
        timeout=TIMEOUT * 3,
    )
    return done.stdout.decode().strip()
