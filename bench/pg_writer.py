"""Profile the PostgreSQL write path in one process: appends, writer load, statements per job.

Starts a private durable PostgreSQL cluster (``tests/postgres_server.py``) and
redis-server, serves the app in-process (its worker on, nothing to deliver),
and posts ``--appends`` entries with ``--posters`` concurrent clients over 20
incidents. Prints one JSON line: appends/s, p50/p99 latency, the writer
thread's busy share, jobs per group, ms per group and per job, and per job the
statements sent and the round trips (pipeline syncs) they cost.

``--root`` runs another checkout's code (A/B in one session, as the machine is
noisy): ``.venv/bin/python bench/pg_writer.py --root /work/main``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
parser.add_argument("--appends", type=int, default=2000)
parser.add_argument("--posters", type=int, default=16)
parser.add_argument("--profile", action="store_true", help="print the writer's top functions")
parser.add_argument("--statements", action="store_true", help="print server time per statement")
parser.add_argument("--trace", action="store_true", help="print the statements of one group")
args = parser.parse_args()
sys.path[:0] = [args.root, os.path.join(args.root, "tests")]

import psycopg  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from postgres_server import running_postgres  # noqa: E402
from redis_server import running_redis  # noqa: E402

from broadcaster.app import create_app  # noqa: E402
from broadcaster.auth.tokens import TOKENS  # noqa: E402
from broadcaster.settings import Settings  # noqa: E402
from broadcaster.store import pg_conn, postgres  # noqa: E402

stats = dict.fromkeys(("groups", "jobs", "busy", "cpu", "commit", "statements", "syncs"), 0.0)
profiler = cProfile.Profile()
trace: list[str] = []


def instrument() -> None:
    """Count groups, jobs, statements and syncs; time the writer's groups."""
    attempt = postgres.PgDatabase._attempt

    def timed(
        conn: pg_conn.PgConnection, group: list[tuple[Any, Any]], *, careful: bool
    ) -> list[tuple[Any, bool, Any]]:
        started, cpu = time.perf_counter(), time.thread_time()
        tracing = args.trace and stats["groups"] == 50
        if tracing:
            trace.append(f"-- group of {len(group)}")
        if args.profile:
            profiler.enable()
        try:
            return attempt(conn, group, careful=careful)
        finally:
            if args.profile:
                profiler.disable()
            if tracing:
                args.trace = False
            stats["busy"] += time.perf_counter() - started
            stats["cpu"] += time.thread_time() - cpu
            stats["groups"] += 1
            stats["jobs"] += len(group)

    postgres.PgDatabase._attempt = staticmethod(timed)  # type: ignore[method-assign]
    execute = pg_conn.PgConnection.execute

    def counted(self: pg_conn.PgConnection, sql: str, params: Any = ()) -> pg_conn.PgCursor:
        if self.pipeline is not None:
            stats["statements"] += 1
            if args.trace and stats["groups"] == 50:
                trace.append(" ".join(sql.split())[:160])
        return execute(self, sql, params)

    pg_conn.PgConnection.execute = counted  # type: ignore[method-assign]
    sync = pg_conn.PgConnection.sync

    def synced(self: pg_conn.PgConnection) -> None:
        if self.pipeline is not None and getattr(self, "_unsynced", True):
            stats["syncs"] += 1
            if args.trace and stats["groups"] == 50:
                trace.append("   <sync>")
        return sync(self)

    pg_conn.PgConnection.sync = synced  # type: ignore[method-assign]
    commit = psycopg.Connection.commit

    def commit_timed(self: psycopg.Connection[Any]) -> None:
        started = time.perf_counter()
        try:
            return commit(self)
        finally:
            if threading.current_thread().name == "pg-writer":
                stats["commit"] += time.perf_counter() - started

    psycopg.Connection.commit = commit_timed  # type: ignore[method-assign]


async def main() -> None:
    with running_postgres(durable=True) as server:
        if args.statements:
            server.set("shared_preload_libraries = 'pg_stat_statements'")
            server.stop()
            server.start()
        url = server.create_database()
        if args.statements:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
        with tempfile.TemporaryDirectory() as tmp:
            async with running_redis(Path(tmp) / "redis") as redis:
                settings = Settings.from_env(
                    {},
                    data_dir=Path(tmp) / "data",
                    public_url="http://example.test",
                    database_url=url,
                    redis_url=redis.url,
                )
                async with TestClient(TestServer(create_app(settings))) as client:
                    await run(client)
        if args.statements:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT calls, total_exec_time,"
                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
                    " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20"
                ).fetchall()
            for calls, total, query in rows:
                print(f"{calls:7d} {total:9.1f} ms {total / calls:7.3f} ms/call  {query}")


async def run(client: TestClient) -> None:
    _, token = await client.app[TOKENS].create("editor", "bench", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    incidents = []
    for n in range(20):
        response = await client.post(
            "/api/incidents", json={"title": f"事件{n}", "severity": "severe"}, headers=headers
        )
        incidents.append((await response.json())["id"])
    latencies: list[float] = []
    left = args.appends

    async def poster(k: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            incident = incidents[(k + left) % len(incidents)]
            started = time.perf_counter()
            response = await client.post(
                f"/api/incidents/{incident}/entries",
                json={"body": "水位持续上涨，请沿河居民立即转移。"},
                headers=headers,
            )
            assert response.status == 201, await response.text()
            latencies.append(time.perf_counter() - started)

    for key in stats:
        stats[key] = 0
    started = time.perf_counter()
    await asyncio.gather(*(poster(k) for k in range(args.posters)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    jobs = max(stats["jobs"], 1)
    print(
        json.dumps(
            {
                "root": args.root,
                "appends_per_s": round(len(latencies) / elapsed, 1),
                "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                "writer_busy": round(stats["busy"] / elapsed, 3),
                "jobs_per_group": round(stats["jobs"] / max(stats["groups"], 1), 1),
                "ms_per_group": round(stats["busy"] * 1000 / max(stats["groups"], 1), 2),
                "ms_per_job": round(stats["busy"] * 1000 / jobs, 2),
                "cpu_ms_per_job": round(stats["cpu"] * 1000 / jobs, 2),
                "commit_ms_per_group": round(stats["commit"] * 1000 / max(stats["groups"], 1), 2),
                "statements_per_job": round(stats["statements"] / jobs, 1),
                "syncs_per_job": round(stats["syncs"] / jobs, 2),
                "load1": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )
    if trace:
        print("\n".join(trace))
    if args.profile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    instrument()
    if os.environ.get("SWITCH"):
        sys.setswitchinterval(float(os.environ["SWITCH"]))
    asyncio.run(main())
