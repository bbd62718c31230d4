"""Measure several nodes on PostgreSQL: durable appends, fan-out over nodes, a new node's start.

One run starts a private PostgreSQL cluster (``fsync`` and ``synchronous_commit``
on: every 201 is on its disk), a private redis-server (the bus only) and real
``broadcaster serve`` processes:

- appends: ``--posters`` concurrent clients for ``--append-seconds`` each,
  over 20 incidents, on a single SQLite node (the reference), on one node on
  PostgreSQL, and with the posters split over two PostgreSQL nodes.
- fan-out: ``--subscribers`` lean WebSocket clients (``bench/wsclient.py``)
  on one incident, posts at ``--rate`` per second through node A's API; all
  subscribers on A (the reference), then split half and half over A and B.
  Latency runs from just before the POST to the frame's arrival, so it
  includes the durable write and, on B, the Redis hop. Loss counts messages
  a subscriber never got.
- a new node: the seconds from starting ``broadcaster serve`` on the shared
  database to its first ``/readyz`` 200 and first served timeline, once on
  the fresh database and once after the history the other cases wrote.

Client and servers share the machine, so the figures are lower bounds; the
1-minute load average is printed. Usage::

    .venv/bin/python bench/multinode.py [--subscribers 10000] [--rate 10] [--seconds 10]
        [--posters 16] [--append-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

# Import the project (and ``bench``) from the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from postgres_server import running_postgres  # noqa: E402

from bench.append import free_port, ranked, run_case  # noqa: E402
from bench.wsclient import read_results  # noqa: E402

TOKEN = re.compile(r"\b(bct_[A-Za-z0-9_-]+)")
DRAIN = 2.0


class Node:
    """One ``broadcaster serve`` process on its own data directory."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = ""
        data = tmp / name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={**env, "BROADCASTER_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def ready(self, session: aiohttp.ClientSession, *, first: bool) -> None:
        if first:  # a brand-new deployment prints its admin token once
            assert self.process.stdout is not None
            line = await asyncio.to_thread(self.process.stdout.readline)
            while line and not TOKEN.search(line):
                line = await asyncio.to_thread(self.process.stdout.readline)
            self.token = TOKEN.search(line).group(1) if line else ""  # type: ignore[union-attr]
        for _ in range(300):
            try:
                async with session.get(self.base + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"node on {self.port} did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            if client.ping():
                return process, url
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


async def post(session: aiohttp.ClientSession, node: Node, incident: str, body: str) -> None:
    url = f"{node.base}/api/incidents/{incident}/entries"
    async with session.post(url, json={"body": body}) as response:
        if response.status != 201:
            raise RuntimeError(f"POST answered {response.status}: {await response.text()}")


async def fanout(
    session: aiohttp.ClientSession,
    poster: Node,
    spread: list[tuple[Node, int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Subscribe ``count`` clients on each node, post on ``poster``; figures per node."""
    async with session.post(
        f"{poster.base}/api/incidents", json={"title": "fan-out", "severity": "minor"}
    ) as response:
        incident = (await response.json())["id"]
    await post(session, poster, incident, "warm-up 0")
    clients: list[tuple[Node, asyncio.subprocess.Process, str]] = []
    for node, count in spread:
        outfile = tempfile.mktemp(prefix="bench-nodes-")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.wsclient", "127.0.0.1", str(node.port),
            f"/ws/incidents/{incident}?after=1", str(count), outfile,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        clients.append((node, process, outfile))
    for _, process, _ in clients:
        await process.stdout.readline()  # type: ignore[union-attr]
    for n in range(int(args.rate * args.warmup)):
        await post(session, poster, incident, f"warm-up {n + 1}")
        await asyncio.sleep(1 / args.rate)
    total = int(args.rate * args.seconds)
    begin = time.monotonic()
    tasks = []
    for number in range(1, total + 1):
        delay = begin + (number - 1) / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = f"bench n={number} t={time.time():.6f}"
        tasks.append(asyncio.create_task(post(session, poster, incident, sent)))
    await asyncio.gather(*tasks)
    await asyncio.sleep(DRAIN)
    per_node: dict[int, tuple[array, int, int]] = {}
    for node, process, outfile in clients:
        process.stdin.write(b"stop\n")  # type: ignore[union-attr]
        await process.stdin.drain()  # type: ignore[union-attr]
        await process.stdout.readline()  # type: ignore[union-attr]
        await process.wait()
        header, samples, _ = read_results(outfile)
        os.unlink(outfile)
        got, unique, expected = per_node.get(node.port, (array("d"), 0, 0))
        got.extend(samples)
        per_node[node.port] = (
            got,
            unique + header["unique"],
            expected + total * header["connections"],
        )
    return {
        ("A" if port == poster.port else "B"): summary(samples, expected - unique)
        for port, (samples, unique, expected) in per_node.items()
    }


def summary(samples: array, lost: int) -> dict[str, Any]:
    ordered = sorted(samples)
    if not ordered:
        return {"lost": lost}

    def pct(p: float) -> float:
        return round(ranked(ordered, p) * 1000, 2)

    return {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "lost": lost}


async def appends(
    session: aiohttp.ClientSession, nodes: list[Node], args: argparse.Namespace
) -> dict[str, Any]:
    """Post from ``--posters`` clients over 20 incidents, spread over ``nodes``."""
    urls = []
    for n in range(20):
        node = nodes[n % len(nodes)]
        body = {"title": f"基准 {n}", "severity": "minor"}
        async with session.post(f"{node.base}/api/incidents", json=body) as response:
            incident = (await response.json())["id"]
        urls.append(f"{node.base}/api/incidents/{incident}/entries")
    return await run_case(session, urls, args.posters, args.append_seconds, 1.0)


async def first_served(session: aiohttp.ClientSession, node: Node, incident: str) -> dict[str, Any]:
    """Wait until a new node answers ``/readyz`` and serves ``incident``; return the seconds."""
    await node.ready(session, first=False)
    ready = time.monotonic() - node.started
    async with session.get(f"{node.base}/api/incidents/{incident}/entries?limit=1") as response:
        assert response.status == 200, await response.text()
    return {"ready_s": round(ready, 2), "served_s": round(time.monotonic() - node.started, 2)}


async def history(session: aiohttp.ClientSession, node: Node) -> dict[str, Any]:
    async with session.get(f"{node.base}/api/incidents") as response:
        incidents = (await response.json())["incidents"]
    return {
        "incidents": len(incidents),
        "entries": sum(i["head"]["seq"] for i in incidents),
        "any": incidents[0]["id"],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    # Every viewer connects from 127.0.0.1: lift the per-client cap of live connections.
    base_env["BROADCASTER_MAX_LIVE_PER_CLIENT"] = "1000000"
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"bench": "multinode", "date": time.strftime("%Y-%m-%d")}
    nodes: list[Node] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp_name,
        running_postgres(durable=True) as postgres,
    ):
        tmp = Path(tmp_name)
        server, url = start_redis(tmp)
        key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        pg_env = {
            **base_env,
            "BROADCASTER_DATABASE_URL": postgres.create_database(),
            "BROADCASTER_REDIS_URL": url,
            "BROADCASTER_SIGNING_KEY": key,
        }
        timeout = aiohttp.ClientTimeout(total=120)
        half = args.subscribers // 2
        try:
            single = Node(tmp, "sqlite", base_env)
            a = Node(tmp, "a", pg_env)
            nodes += [single, a]
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await single.ready(session, first=True)
                await a.ready(session, first=True)
                result["start_fresh_database"] = {"ready_s": round(time.monotonic() - a.started, 2)}
                b = Node(tmp, "b", pg_env)
                nodes.append(b)
                await b.ready(session, first=False)
            for node in (single, a):
                headers = {
                    "Authorization": f"Bearer {node.token}",
                    "Content-Type": "application/json",  # run_case posts raw bytes
                }
                async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
                    if node is single:
                        result["append_sqlite_1_node"] = await appends(session, [single], args)
                        continue
                    result["append_postgresql_1_node"] = await appends(session, [a], args)
                    result["append_postgresql_2_nodes"] = await appends(session, [a, b], args)
                    result["fanout_1_node"] = await fanout(
                        session, a, [(a, args.subscribers)], args
                    )
                    result["fanout_2_nodes"] = await fanout(
                        session, a, [(a, half), (b, args.subscribers - half)], args
                    )
                    written = await history(session, a)
                    c = Node(tmp, "c", pg_env)
                    nodes.append(c)
                    served = await first_served(session, c, written.pop("any"))
                    result["start_after_history"] = {**served, **written}
        finally:
            for node in nodes:
                node.stop()
            server.terminate()
            server.wait(timeout=30)
    sqlite_rate = result["append_sqlite_1_node"]["appends_per_s"]
    for case in ("append_postgresql_1_node", "append_postgresql_2_nodes"):
        result[case + "_vs_sqlite"] = round(result[case]["appends_per_s"] / sqlite_rate, 3)
    one, two = result["fanout_1_node"]["A"], result["fanout_2_nodes"]
    worst_two = max(row["p99_ms"] for row in two.values())
    result["fanout_2_nodes_p99_vs_1_node"] = round(worst_two / one["p99_ms"], 3)
    result["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["cpus"] = os.cpu_count()
    result["settings"] = vars(args)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second (fan-out)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured fan-out time")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured fan-out time")
    parser.add_argument("--posters", type=int, default=16, help="concurrent posting clients")
    parser.add_argument("--append-seconds", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    for case in ("append_sqlite_1_node", "append_postgresql_1_node", "append_postgresql_2_nodes"):
        row = result[case]
        print(
            f"{case:<26} {row['appends_per_s']} ok/s, p50 {row['p50_ms']} ms,"
            f" p99 {row['p99_ms']} ms, errors {row['errors']}"
        )
    for case in ("fanout_1_node", "fanout_2_nodes"):
        for node, row in result[case].items():
            print(f"{case:<26} subscribers on {node}: {row}")
    print(f"fan-out p99, 2 nodes vs 1: {result['fanout_2_nodes_p99_vs_1_node']}x")
    print(f"new node, fresh database: {result['start_fresh_database']}")
    print(f"new node, after the history: {result['start_after_history']}")
    print(f"1-minute load average before/after: {result['load_avg_1m']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
