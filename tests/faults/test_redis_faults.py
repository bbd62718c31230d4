"""Break a multi-node deployment on purpose: a node, Redis itself, a delivery worker.

Every node is a real ``broadcaster serve`` / ``broadcaster worker`` process
or a full app on a loopback port, all sharing one private redis-server (AOF,
``appendfsync always``) and one signing key.
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
from redis_server import RedisServer, running_redis
from serve_process import ServeProcess
from test_webhooks import eventually
from test_worker_crash import Processes, free_port
from webhook_receiver import Receiver

from broadcaster.app import create_app
from broadcaster.appkeys import DB
from broadcaster.cli import main
from broadcaster.settings import Settings
from broadcaster.signing import b64url
from faults.clients import Follower, gapless

FOLLOWERS = 40
ENTRIES = 40
Start = Callable[[str, str], Awaitable[TestClient]]


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
    tmp_path: Path, redis_url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL node A mid-burst: its WebSocket viewers reconnect to B and get 1..N once each."""
    monkeypatch.setenv("BROADCASTER_REDIS_URL", redis_url)
    monkeypatch.setenv("BROADCASTER_SIGNING_KEY", key)
    a = await asyncio.to_thread(ServeProcess(tmp_path / "a").start, TIMEOUT * 3)
    b = await asyncio.to_thread(ServeProcess(tmp_path / "b").start, TIMEOUT * 3)
    (token,) = a.tokens()
    assert b.tokens() == [], "the second node found the first node's admin in the shared log"
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
    """Start in-process nodes on a given Redis; all are closed at the end."""
    started: list[TestClient] = []

    async def start(name: str, url: str) -> TestClient:
        settings = Settings.from_env(
            {}, data_dir=tmp_path / name, public_url="http://x.test", redis_url=url, signing_key=key
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


async def test_acknowledged_entries_survive_a_redis_sigkill(
    private_redis: RedisServer, node_on: Start
) -> None:
    """SIGKILL Redis mid-burst: writes answer 503 meanwhile (never 201); every 201 survives."""
    start = node_on
    a = await start("a", private_redis.url)
    editor = bearer(await make_token(a, "editor"))
    incident = (await create_incident(a, editor))["id"]
    acknowledged: dict[int, str] = {}
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    phase = {"name": "before"}
    during: Counter[int] = Counter()
    stop = asyncio.Event()

    async def poster(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            url = f"/api/incidents/{incident}/entries"
            sent_while_down = phase["name"] == "down"  # Redis already reaped
            response = await a.post(url, json={"body": f"{k}-{n}"}, headers=editor)
            statuses[response.status] += 1
            if sent_while_down and phase["name"] == "down":  # Redis dead from send to answer
                during[response.status] += 1
            body = await response.json()
            if response.status == 201:
                acknowledged[body["seq"]] = body["hash"]
            else:
                codes[body["error"]] += 1
                await asyncio.sleep(0.01)

    posters = [asyncio.create_task(poster(k)) for k in range(4)]
    await until(lambda: len(acknowledged) >= 20, "posts before the crash")
    await private_redis.kill()
    phase["name"] = "down"
    await until(lambda: during[503] >= 5, "refusals while Redis is down")
    phase["name"] = "restarting"
    await private_redis.restart()
    phase["name"] = "after"
    count = len(acknowledged)
    await until(lambda: len(acknowledged) >= count + 20, "posts after the restart")
    stop.set()
    await asyncio.gather(*posters)

    assert set(statuses) <= {201, 503}, statuses
    assert during[201] == 0, "a write was acknowledged while Redis was down"
    assert set(codes) <= {"log_unavailable", "log_busy"}, codes
    fresh = await start("fresh", private_redis.url)
    assert await fresh.app[DB].sync()
    for node in (a, fresh):
        listed = await (await node.get(f"/api/incidents/{incident}/entries")).json()
        stored = {e["seq"]: e["hash"] for e in listed["entries"]}
        assert sorted(stored) == list(range(1, len(stored) + 1))
        assert all(stored.get(seq) == digest for seq, digest in acknowledged.items())
        base = str(node.make_url("")).rstrip("/")
        assert await asyncio.to_thread(main, ["verify", base, incident]) == 0


@pytest.fixture
def redis_procs(tmp_path: Path, redis_url: str, key: str) -> Iterator[Processes]:
    """Commands in multi-node mode: each process gets its own data directory by name."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(
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
    redis_procs: Processes, tmp_path: Path
) -> None:
    """SIGKILL a worker mid-delivery: a worker on another node sends everything, ids unchanged."""
    procs = redis_procs
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
