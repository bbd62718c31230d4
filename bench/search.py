"""Measure ``GET /api/search`` latency over 100,000 entries, on SQLite and on PostgreSQL.

For each backend, bulk-loads a fresh store through the store itself
(``append_in`` with the search hook, in write jobs of a few thousand entries,
so every entry is chained, signed and indexed exactly as in service; both
stores load at the same time, in two processes, which only shortens the
run), then, one backend after the other, starts ``broadcaster serve`` on it
as a subprocess on a free loopback port and times sequential queries from
one aiohttp client: Chinese two- and four-character terms, English words,
and a two-term query filtered by incident, with ``/healthz`` timed in the
same run as the floor of the HTTP path. The texts are synthetic bulletins
drawn from a fixed vocabulary with a fixed seed, so both backends hold the
same texts, and common terms match tens of thousands of entries (the slow
case for ranking).

SQLite lives in a temporary data directory. PostgreSQL is a private cluster
this script starts itself and removes afterwards (``tests/postgres_server.py``:
``initdb`` in a temporary directory, loopback only, ``fsync = off`` since
only the loading speed depends on it), loaded over its Unix socket and served
over TCP; after loading the script runs ``ANALYZE`` once, as autovacuum would
on a table that grew this much. The table prints p50/p95/max per query kind
and backend, and PostgreSQL's p95 as a multiple of SQLite's.

Usage::

    .venv/bin/python bench/search.py [--entries 100000] [--queries 200]
                                     [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.append import free_port  # noqa: E402
from broadcaster.log.signing import Signer  # noqa: E402
from broadcaster.search import service as search  # noqa: E402
from broadcaster.store.sqlite import Database  # noqa: E402
from broadcaster.store.timeline import TimelineStore  # noqa: E402
from broadcaster.timeline.model import Actor, NewEntry  # noqa: E402

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


async def load(
    store: TimelineStore, entries: int, name: str, incidents: int = 50, batch: int = 2000
) -> float:
    """Fill ``store`` with ``entries`` indexed entries; return seconds."""
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

        def job(conn: Any, count: int) -> None:
            for _ in range(count):
                incident = rng.choice(made)
                new = NewEntry(body=bulletin(rng))
                store.append_in(conn, incident["id"], new, ACTOR, (), (search.search_hook,))

        done = 0
        while done < entries:
            count = min(batch, entries - done)
            await store.db.write(functools.partial(job, count=count))
            done += count
            if done % (10 * batch) == 0 or done == entries:
                print(f"{name}: loaded {done}/{entries}", file=sys.stderr, flush=True)
    finally:
        await store.close()
    return time.perf_counter() - started


def serve(data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    """Start ``broadcaster serve`` on ``data_dir`` (a separate process, as in production)."""
    env = {**os.environ, "BROADCASTER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("BROADCASTER_DATABASE_URL", None)
    env.pop("BROADCASTER_REDIS_URL", None)
    if database_url:
        env["BROADCASTER_DATABASE_URL"] = database_url
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


@asynccontextmanager
async def postgres_urls() -> AsyncIterator[tuple[str, str, str]]:
    """Start a private PostgreSQL cluster with a fresh database.

    Yield its URL over TCP (the service's, as between nodes), over the Unix
    socket (the loader's: a third fewer seconds for the same round trips) and
    the server version.
    """
    import psycopg

    from tests.postgres_server import running_postgres

    with running_postgres(durable=False) as server:
        url = server.create_database()
        name = url.rsplit("/", 1)[1]
        local = f"postgresql://postgres@/{name}?host={server.dir}&port={server.port}"
        with psycopg.connect(url) as conn:
            [(version_text,)] = conn.execute("SHOW server_version").fetchall()
            version = str(version_text).split()[0]
        yield url, local, version


def analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def load_sqlite(data_dir: Path, entries: int) -> str:
    """Fill a SQLite store in ``data_dir`` (run in a process of its own); describe it."""
    path = data_dir / "broadcaster.db"
    store = TimelineStore(Database(path), Signer.load(data_dir))
    seconds = asyncio.run(load(store, entries, "sqlite"))
    size = path.stat().st_size / 2**20
    return f"SQLite {sqlite3.sqlite_version}, {size:.0f} MiB, loaded in {seconds:.0f} s"


async def prepare(
    backend: str, entries: int, stack: AsyncExitStack
) -> tuple[Path, str | None, str]:
    """Make and fill one backend's store; return its data dir, database URL and a description."""
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-search-")))
    if backend == "postgresql":
        from broadcaster.store.postgres import PgDatabase

        url, local, version = await stack.enter_async_context(postgres_urls())
        store = TimelineStore(PgDatabase(local), Signer.load(data_dir))
        seconds = await load(store, entries, backend)
        await asyncio.to_thread(analyze, url)
        return data_dir, url, f"PostgreSQL {version}, loaded in {seconds:.0f} s"
    # Its own process: PostgreSQL's load, mostly waiting on round trips, would
    # otherwise wait for this CPU-bound one's turn at the GIL after each.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        about = await asyncio.get_running_loop().run_in_executor(
            pool, load_sqlite, data_dir, entries
        )
    return data_dir, None, about


async def run_server(data_dir: Path, url: str | None, rounds: int) -> dict[str, list[float]]:
    """Serve one loaded store and measure it."""
    port = free_port()
    process = serve(data_dir, port, url)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(base, session, process)
        return await measure(base, rounds)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per case")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    backends = args.backends.split(",")
    results: dict[str, dict[str, list[float]]] = {}
    async with AsyncExitStack() as stack:
        # Loading both at once only shortens the run: PostgreSQL's load mostly
        # waits on round trips. Queries are timed one backend at a time.
        prepared = await asyncio.gather(*(prepare(b, args.entries, stack) for b in backends))
        for backend, (data_dir, url, _) in zip(backends, prepared, strict=True):
            results[backend] = await run_server(data_dir, url, args.queries)
    abouts = [about for _, _, about in prepared]
    print(f"search over {args.entries} entries, {args.queries} sequential queries per case,"
          f" Python {platform.python_version()}, {os.cpu_count()} CPUs;"
          f" {'; '.join(abouts)}")  # fmt: skip
    header = "| query |" + "".join(f" {b} p50 ms | {b} p95 ms | {b} max ms |" for b in backends)
    both = "sqlite" in results and "postgresql" in results
    print(header + (" p95 PostgreSQL/SQLite |" if both else ""))
    print("| --- |" + " --- |" * (3 * len(backends) + both))
    for name in results[backends[0]]:
        cells = []
        for backend in backends:
            values = results[backend][name]
            cells.append(f" {statistics.median(values):.1f} | {percentile(values, 95):.1f} |"
                         f" {max(values):.1f} |")  # fmt: skip
        ratio = ""
        if both:
            pg, lite = (percentile(results[b][name], 95) for b in ("postgresql", "sqlite"))
            ratio = f" {pg / lite:.2f} |"
        print(f"| {name} |" + "".join(cells) + ratio)


if __name__ == "__main__":
    asyncio.run(main())
