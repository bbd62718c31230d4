"""Measure ``GET /api/search`` latency over 100,000 entries (target: p95 under 50 ms).

Bulk-loads a temporary data directory through the store itself (``append_in``
with the search hook, in write jobs of a few thousand entries, so every entry
is chained, signed and indexed exactly as in service), then starts
``broadcaster serve`` on it as a subprocess on a free loopback port and times
sequential queries from one aiohttp client: Chinese two- and four-character
terms, English words, and a two-term query filtered by incident, with
``/healthz`` timed in the same run as the floor of the HTTP path. The texts
are synthetic bulletins drawn from a fixed vocabulary with a fixed seed, so
common terms match tens of thousands of entries (the slow case for ranking).

Usage::

    .venv/bin/python bench/search.py [--entries 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.append import free_port  # noqa: E402
from broadcaster import search  # noqa: E402
from broadcaster.model import Actor, NewEntry  # noqa: E402
from broadcaster.signing import Signer  # noqa: E402
from broadcaster.store.timeline import SQLiteStore  # noqa: E402

PLACES = ["沙子口", "李村", "王哥庄", "北宅", "中韩", "金家岭", "流亭", "城阳", "黄岛", "即墨"]
EVENTS = [
    "山洪", "暴雨", "内涝", "山体滑坡", "停电", "积水", "塌方", "道路中断", "河水漫堤", "台风",
]  # fmt: skip
ACTIONS = [
    "转移群众{n}人", "道路抢通", "恢复供电", "开放避难场所{n}处", "救援队伍{n}支赶赴现场",
    "停课", "封闭隧道", "疏散游客{n}人", "抢修管线", "巡查堤坝",
]  # fmt: skip
ENGLISH = (
    "flood warning for riverside residents; evacuation under way",
    "road reopened after landslide clearance",
    "shelters open at schools; bring documents and medicine",
    "power restored to most households tonight",
)
QUERIES = {
    "zh-2": ["山洪", "转移", "停电", "积水", "隧道", "游客", "堤坝", "供电"],
    "zh-4": ["转移群众", "道路抢通", "恢复供电", "山体滑坡", "避难场所", "巡查堤坝"],
    "en": ["flood", "evacuation", "reopened", "shelters", "medicine", "power"],
}
ACTOR = Actor("bench", "应急管理局", "editor")


def bulletin(rng: random.Random) -> str:
    place, event = rng.choice(PLACES), rng.choice(EVENTS)
    acts = "，".join(a.format(n=rng.randint(2, 4000)) for a in rng.sample(ACTIONS, 3))
    text = f"{place}街道发生{event}，{acts}。请沿河居民注意安全，服从现场指挥。"
    if rng.random() < 0.15:
        text += " " + rng.choice(ENGLISH)
    return text


async def load(data_dir: Path, entries: int, incidents: int = 50, batch: int = 2000) -> float:
    """Fill ``data_dir`` through the store with ``entries`` indexed entries; return seconds."""
    store = SQLiteStore(data_dir / "broadcaster.db", Signer.load(data_dir))
    store.db.add_schema(search.SCHEMA)
    await store.open()
    started = time.perf_counter()
    try:
        await store.db.write(search.rebuild)  # marks the (empty) index as built
        made = [
            await store.create_incident(
                {
                    "title": f"{PLACES[i % len(PLACES)]}{EVENTS[i % len(EVENTS)]}第{i}号事件",
                    "severity": "severe",
                },
                ACTOR,
            )  # fmt: skip
            for i in range(incidents)
        ]
        rng = random.Random(20261126)

        def job(conn: sqlite3.Connection, count: int) -> None:
            for _ in range(count):
                incident = rng.choice(made)
                new = NewEntry(body=bulletin(rng))
                store.append_in(conn, incident["id"], new, ACTOR, (), (search.search_hook,))

        done = 0
        while done < entries:
            count = min(batch, entries - done)
            await store.db.write(lambda conn, count=count: job(conn, count))
            done += count
            print(f"\rloaded {done}/{entries}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        await store.close()
    return time.perf_counter() - started


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``broadcaster serve`` on ``data_dir`` (a separate process, as in production)."""
    env = {**os.environ, "BROADCASTER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_ready(base: str, session: aiohttp.ClientSession, process: Any) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def timed(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.get(url, params=params) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{params}: {response.status}")
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(base: str, rounds: int) -> dict[str, list[float]]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = base + "/api/search"
        first = (await (await session.get(base + "/api/incidents")).json())["incidents"][0]["id"]
        cases = {name: [{"q": q} for q in terms] for name, terms in QUERIES.items()}
        cases["zh-2+en, ?incident="] = [{"q": "转移 flood", "incident": first},
                                        {"q": "山洪 道路", "incident": first}]  # fmt: skip
        for params in [p for group in cases.values() for p in group]:  # warm the page cache
            await timed(session, url, params)
        results: dict[str, list[float]] = {}
        for name, group in cases.items():
            results[name] = [
                await timed(session, url, group[i % len(group)]) for i in range(rounds)
            ]
        # Reference in the same run: the same HTTP path with no database work at all.
        results["reference: GET /healthz"] = [
            await timed(session, base + "/healthz", {}) for _ in range(rounds)
        ]
        async with session.get(url, params={"q": "转移"}) as response:
            hits = len((await response.json())["results"])
        print(f"(a common term returns {hits} results, the default page)", file=sys.stderr)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        data_dir = Path(tmp)
        seconds = await load(data_dir, args.entries)
        size = (data_dir / "broadcaster.db").stat().st_size / 2**20
        port = free_port()
        process = serve(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                await wait_ready(base, session, process)
            results = await measure(base, args.queries)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"search over {args.entries} entries ({size:.0f} MiB database, loaded in "
          f"{seconds:.0f} s), {args.queries} sequential queries per case, "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("| query | p50 ms | p95 ms | max ms |")
    print("| --- | --- | --- | --- |")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 95):.1f} |"
              f" {max(values):.1f} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
