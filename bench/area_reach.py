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

Cases: one ``broadcaster serve`` on SQLite (its worker inside); two
``broadcaster serve`` nodes on one PostgreSQL database and one Redis bus,
each with its delivery worker (the SMS rate shared between them through
Redis), the entry posted to the first. The bench reads the store directly.
Nodes, Kannel, the fake SMSC, PostgreSQL and this client share the machine,
so the figures are lower bounds. Usage::

    .venv/bin/python bench/area_reach.py [--subscribers 10000] [--sms-rate 1000]
        [--no-sqlite] [--no-postgres] [--incident-only]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.append import free_port  # noqa: E402
from broadcaster.settings import Settings  # noqa: E402
from broadcaster.store import database_for  # noqa: E402

AREAS = ROOT / "docs" / "examples" / "areas-laoshan.csv"
#: ``--incident-only``: subscribe every phone to the incident instead (no area).
INCIDENT_ONLY = False
TOKEN = re.compile(r"\b(bct_[A-Za-z0-9_-]+)")


def phone(n: int) -> str:
    return f"+86138{n:08d}"


class Node:
    """One ``broadcaster serve`` process; the first of a site prints its admin token."""

    def __init__(self, data: Path, port: int, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**env, "BROADCASTER_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def token(self) -> str:
        assert self.process.stdout is not None
        while line := await asyncio.to_thread(self.process.stdout.readline):
            if found := TOKEN.search(line):
                return found.group(1)
        raise RuntimeError("the first node printed no admin token")

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.base + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.base} did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def run_case(
    subscribers: int, rate: int, store: dict[str, str], nodes: int, tmp: Path
) -> dict[str, Any]:
    from kannel_gateway import running_kannel

    ports = [free_port() for _ in range(nodes)]
    async with running_kannel(tmp / "kannel", mo_url=None) as lab:
        sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
        env |= {
            "BROADCASTER_AREAS_FILE": str(AREAS),
            "BROADCASTER_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
            "BROADCASTER_SMS_GATEWAY": f"kannel+{sendsms}?from=12379",
            "BROADCASTER_SMS_RATE": str(rate),
            **store,
        }
        running = [Node(tmp / "node0", ports[0], env)]
        timeout = aiohttp.ClientTimeout(total=120)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                token = await running[0].token()
                await running[0].ready(session)
                running += [Node(tmp / f"node{n}", ports[n], env) for n in range(1, nodes)]
                for node in running[1:]:
                    await node.ready(session)
                settings = Settings.from_env(env, data_dir=tmp / "node0")
                db = database_for(settings)
                await db.open()
                try:
                    return await reach(session, running[0], token, db, lab, subscribers) | {
                        "nodes": nodes
                    }
                finally:
                    await db.close()
        finally:
            for node in running:
                node.stop()


async def reach(
    session: aiohttp.ClientSession,
    node: Node,
    token: str,
    db: Any,
    lab: Any,
    subscribers: int,
) -> dict[str, Any]:
    """Subscribe the phones, post the first SMS entry through ``node``, follow every SMS."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"title": "沙子口山洪", "severity": "severe", "code": "SZK", "areas": ["370212002"]}
    async with session.post(f"{node.base}/api/incidents", json=body, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
        incident = (await answer.json())["id"]

    def insert(conn: Any) -> None:
        stamp = "2026-01-01T00:00:00.000Z"
        if INCIDENT_ONLY:  # the reference: every phone follows the incident by its code
            conn.executemany(
                "INSERT INTO sms_subscribers (incident, number, created_at, source)"
                " VALUES (?, ?, ?, 'bench')",
                [(incident, phone(n), stamp) for n in range(subscribers)],
            )
            return
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

    await db.write(insert)
    path = f"{node.base}/api/incidents/{incident}/entries"
    entry = {"body": "请沿河居民立即转移到高处。", "sms": True}
    started = time.perf_counter()
    async with session.post(path, json=entry, headers=headers) as answer:
        assert answer.status == 201
    acknowledged = time.perf_counter()

    def queued(conn: Any) -> int:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE event LIKE 'entry.sms%' AND seq = 1"
            ).fetchone()[0]
        )

    count = await db.read(queued)
    checked = time.perf_counter()
    receivers: Counter[str] = Counter()
    handed = None
    while sum(receivers.values()) < subscribers:
        message = await lab.smsc.next_mt_message(120)
        receivers[message.receiver] += 1
        if handed is None and sum(receivers.values()) % 500 == 0:
            handed = await all_handed(db, acknowledged)
    received = time.perf_counter() - acknowledged
    if handed is None:
        handed = await all_handed(db, acknowledged, wait=True)
    # Anything sent twice would be in flight by now: every row has left "pending".
    with contextlib.suppress(TimeoutError):
        while True:
            message = await lab.smsc.next_mt_message(2)
            receivers[message.receiver] += 1
    expected = {phone(n) for n in range(subscribers)}
    return {
        "post_ms": (acknowledged - started) * 1000,
        "queued_at_check": count,
        "check_ms": (checked - acknowledged) * 1000,
        "handed_s": handed,
        "received_s": received,
        "per_second": subscribers / received,
        "duplicates": sum(n - 1 for n in receivers.values() if n > 1),
        "missed": len(expected - set(receivers)),
        "strangers": len(set(receivers) - expected),
        "attempts": await db.read(attempt_outcomes),
        "repeats": await db.read(repeated),
    }


async def all_handed(db: Any, since: float, wait: bool = False) -> float | None:
    """Return seconds since ``since`` once no SMS is pending any more (else ``None``)."""

    def pending(conn: Any) -> int:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE channel = 'sms' AND state = 'pending'"
            ).fetchone()[0]
        )

    while True:
        if await db.read(pending) == 0:
            return time.perf_counter() - since
        if not wait:
            return None
        await asyncio.sleep(0.05)


def attempt_outcomes(conn: Any) -> dict[str, int]:
    """Count SMS attempts by outcome, repeats (attempt 2 and later) apart."""
    rows = conn.execute(
        "SELECT CASE WHEN a.n > 1 THEN 'repeat ' ELSE '' END || a.outcome, COUNT(*)"
        " FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery"
        " WHERE d.event LIKE 'entry.sms%' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def repeated(conn: Any) -> list[tuple[Any, ...]]:
    """Return (delivery, attempt, started, finished, ms) of deliveries attempted twice or more."""
    rows = conn.execute(
        "SELECT a.delivery, a.n, a.started_at, a.finished_at, a.duration_ms"
        " FROM delivery_attempts a WHERE a.delivery IN"
        " (SELECT delivery FROM delivery_attempts WHERE n > 1) ORDER BY a.delivery, a.n LIMIT 12"
    ).fetchall()
    return [tuple(row) for row in rows]


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
    parser.add_argument("--incident-only", action="store_true")
    args = parser.parse_args()
    global INCIDENT_ONLY
    INCIDENT_ONLY = args.incident_only
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
                    "BROADCASTER_DATABASE_URL": postgres.create_database(),
                    "BROADCASTER_REDIS_URL": redis.url,
                    "BROADCASTER_SIGNING_KEY": key,
                }
                r = await run_case(args.subscribers, args.sms_rate, store, 2, Path(tmp) / "pg")
                print(row("PostgreSQL, 2 nodes", r, args.sms_rate, args.subscribers))
                for repeat in r["repeats"]:
                    print("# repeated:", *repeat)
    print(f"# 1-min load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
