"""Measure the reach of a standing area alert: 10,000 phones, queued at the 201, sent once each.

A real Kannel (bearerbox + smsbox from the tests' harness) with the asyncio
fake SMSC as the phone network. ``--subscribers`` numbers follow 崂山区
(``370212``, from ``docs/examples/areas-laoshan.csv``), inserted directly; a
fifth of them also follow 沙子口街道 and a tenth also follow the incident by
its code, so the fan-out has to fold several matches per phone into one SMS.
A severe incident tagged with 沙子口街道 gets its first entry with
``"sms": true``. Reported:

- the POST's 201 time, and how many SMS were queued when the first read after
  the 201 looked (all of them, since the fan-out runs in the append
  transaction) and how long after the 201 that read was;
- the time from the 201 until every SMS was handed to Kannel and until the
  fake SMSC received every one, the rate, and the duplicates (SMS to a phone
  that already had one; must be 0) and phones missed.

Cases: SQLite with one process and its worker; PostgreSQL with two nodes
(two apps on one database and one Redis bus, each with its delivery worker,
the SMS rate shared between them through Redis), the entry posted to the
first. Everything shares this machine and one event loop, so the figures are
lower bounds. Usage::

    .venv/bin/python bench/area_reach.py [--subscribers 10000] [--sms-rate 1000]
        [--no-sqlite] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.append import free_port  # noqa: E402
from broadcaster.app import create_app  # noqa: E402
from broadcaster.appkeys import DB  # noqa: E402
from broadcaster.auth import TOKENS  # noqa: E402
from broadcaster.settings import Settings  # noqa: E402

AREAS = ROOT / "docs" / "examples" / "areas-laoshan.csv"


def phone(n: int) -> str:
    return f"+86138{n:08d}"


async def run_case(
    subscribers: int, rate: int, store: dict[str, Any], nodes: int, tmp: Path
) -> dict[str, Any]:
    from kannel_gateway import running_kannel

    ports = [free_port() for _ in range(nodes)]
    async with running_kannel(tmp / "kannel", mo_url=None) as lab:
        sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
        clients = []
        async with contextlib.AsyncExitStack() as stack:
            for n, port in enumerate(ports):
                settings = Settings.from_env(
                    {"BROADCASTER_AREAS_FILE": str(AREAS)},
                    data_dir=tmp / f"data{n}",
                    public_url=f"http://127.0.0.1:{ports[0]}",
                    sms_gateway=f"kannel+{sendsms}?from=12379",
                    sms_rate=rate,
                    **store,
                )
                server = TestServer(create_app(settings), host="127.0.0.1", port=port)
                clients.append(await stack.enter_async_context(TestClient(server)))
            client = clients[0]
            _, token = await client.app[TOKENS].create("bench", "bench", "editor")
            headers = {"Authorization": f"Bearer {token}"}
            body = {"title": "沙子口山洪", "severity": "severe", "code": "SZK"}
            body["areas"] = ["370212002"]
            async with client.post("/api/incidents", json=body, headers=headers) as response:
                assert response.status == 201, await response.text()
                incident = (await response.json())["id"]

            def insert(conn: Any) -> None:
                stamp = "2026-01-01T00:00:00.000Z"
                conn.executemany(
                    "INSERT INTO sms_area_subscribers (area, number, min_rank, created_at)"
                    " VALUES (?, ?, 3, ?)",
                    [("370212", phone(n), stamp) for n in range(subscribers)]
                    + [("370212002", phone(n), stamp) for n in range(0, subscribers, 5)],
                )
                conn.executemany(
                    "INSERT INTO sms_subscribers (incident, number, created_at, source)"
                    " VALUES (?, ?, ?, 'bench')",
                    [(incident, phone(n), stamp) for n in range(0, subscribers, 10)],
                )

            await client.app[DB].write(insert)
            path = f"/api/incidents/{incident}/entries"
            started = time.perf_counter()
            async with client.post(
                path, json={"body": "请沿河居民立即转移到高处。", "sms": True}, headers=headers
            ) as response:
                assert response.status == 201
            acknowledged = time.perf_counter()

            def queued(conn: Any) -> int:
                return int(
                    conn.execute(
                        "SELECT COUNT(*) FROM deliveries WHERE event LIKE 'entry.sms%' AND seq = 1"
                    ).fetchone()[0]
                )

            # Read through the other node, if there is one: what every node sees.
            count = await clients[-1].app[DB].read(queued)
            checked = time.perf_counter()
            receivers: Counter[str] = Counter()
            handed = None
            while sum(receivers.values()) < subscribers:
                message = await lab.smsc.next_mt_message(120)
                receivers[message.receiver] += 1
                if handed is None and sum(receivers.values()) % 500 == 0:
                    handed = await all_handed(client, acknowledged)
            received = time.perf_counter() - acknowledged
            if handed is None:
                handed = await all_handed(client, acknowledged, wait=True)
            # Anything sent twice would be in flight by now: every row has left "pending".
            with contextlib.suppress(TimeoutError):
                while True:
                    message = await lab.smsc.next_mt_message(2)
                    receivers[message.receiver] += 1
            attempts = await client.app[DB].read(attempt_outcomes)
            repeats = await client.app[DB].read(repeated)
    expected = {phone(n) for n in range(subscribers)}
    return {
        "nodes": nodes,
        "post_ms": (acknowledged - started) * 1000,
        "queued_at_check": count,
        "check_ms": (checked - acknowledged) * 1000,
        "handed_s": handed,
        "received_s": received,
        "per_second": subscribers / received,
        "duplicates": sum(n - 1 for n in receivers.values() if n > 1),
        "missed": len(expected - set(receivers)),
        "strangers": len(set(receivers) - expected),
        "attempts": attempts,
        "repeats": repeats,
    }


def repeated(conn: Any) -> list[tuple[Any, ...]]:
    """Return (delivery, attempt, started, finished, ms) of deliveries attempted twice or more."""
    rows = conn.execute(
        "SELECT a.delivery, a.n, a.started_at, a.finished_at, a.duration_ms"
        " FROM delivery_attempts a WHERE a.delivery IN"
        " (SELECT delivery FROM delivery_attempts WHERE n > 1) ORDER BY a.delivery, a.n LIMIT 12"
    ).fetchall()
    return [tuple(row) for row in rows]


def attempt_outcomes(conn: Any) -> dict[str, int]:
    """Count SMS attempts by outcome, repeats (attempt 2 and later) apart."""
    rows = conn.execute(
        "SELECT CASE WHEN a.n > 1 THEN 'repeat ' ELSE '' END || a.outcome, COUNT(*)"
        " FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery"
        " WHERE d.event LIKE 'entry.sms%' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


async def all_handed(client: TestClient, since: float, wait: bool = False) -> float | None:
    """Return seconds since ``since`` once no SMS is pending any more (else ``None``)."""

    def pending(conn: Any) -> int:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE channel = 'sms' AND state = 'pending'"
            ).fetchone()[0]
        )

    while True:
        if await client.app[DB].read(pending) == 0:
            return time.perf_counter() - since
        if not wait:
            return None
        await asyncio.sleep(0.05)


def row(name: str, r: dict[str, Any], rate: int, subscribers: int) -> str:
    return (
        f"| {name} | {subscribers} | {rate}/s | {r['post_ms']:.0f} ms"
        f" | {r['queued_at_check']} after {r['check_ms']:.0f} ms | {r['handed_s']:.1f} s"
        f" | {r['received_s']:.1f} s | {r['per_second']:.0f} | {r['duplicates']}"
        f" | {r['missed']} | {r['attempts']} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--sms-rate", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"# area reach benchmark, {platform.node()}, Python {platform.python_version()}")
    print(f"# 1-min load before: {os.getloadavg()[0]:.1f}")
    print(
        "| case | phones | rate limit | POST (201) | queued, read after the 201 | all handed"
        " to Kannel | all at SMSC | SMS/s | duplicates | missed | attempts |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench-reach-") as tmp:
        if not args.no_sqlite:
            r = await run_case(args.subscribers, args.sms_rate, {}, 1, Path(tmp) / "sqlite")
            print(row("SQLite, 1 process", r, args.sms_rate, args.subscribers), flush=True)
        if args.no_postgres:
            return
        from postgres_server import running_postgres
        from redis_server import running_redis

        with running_postgres(durable=True) as postgres:
            async with running_redis(Path(tmp) / "redis") as redis:
                key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
                store = {
                    "database_url": postgres.create_database(),
                    "redis_url": redis.url,
                    "signing_key": key,
                }
                r = await run_case(args.subscribers, args.sms_rate, store, 2, Path(tmp) / "pg")
                print(row("PostgreSQL, 2 nodes", r, args.sms_rate, args.subscribers))
                for repeat in r["repeats"]:
                    print("# repeated:", *repeat)
    print(f"# 1-min load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
