"""Measure delivery: webhook fan-out to 1, 10 and 100 endpoints, and SMS through Kannel.

Webhooks: the whole app runs in this process on a loopback port (data in a
temporary directory, fsync on as always) with its delivery worker; one local
aiohttp receiver answers 200 on a distinct path per endpoint. For each
endpoint count it reports the fan-out time of one entry (201 to the last
endpoint receiving it; median and worst of ``--fanouts`` entries) and the
deliveries per second of a burst (queued while the endpoints were paused, then
released at once, so it is the worker's rate rather than the posting rate).

SMS: a real Kannel (bearerbox + smsbox, started by the tests' harness) with
the asyncio fake SMSC as the phone network; ``--subscribers`` numbers are
inserted directly, then one entry with ``"sms": true`` is posted. It reports
the time until every SMS was handed to Kannel (sendsms answered) and until
the fake SMSC received every one, with ``BROADCASTER_SMS_RATE`` set to
``--sms-rate``. Everything (app, receiver, fake SMSC) shares this machine and
this event loop, so the figures are lower bounds. Usage::

    .venv/bin/python bench/delivery.py [--subscribers 10000] [--sms-rate 1000] [--no-sms]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.append import free_port  # noqa: E402
from broadcaster.app import create_app  # noqa: E402
from broadcaster.appkeys import DB  # noqa: E402
from broadcaster.auth.tokens import TOKENS  # noqa: E402
from broadcaster.settings import Settings  # noqa: E402

BODY = "沙子口街道水位持续上涨，请沿河居民立即转移。"


class Counter:
    """Count distinct deliveries (path, webhook-id) and wake waiters when a total is reached."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.target = 0
        self.reached = asyncio.Event()

    def expect(self, more: int) -> None:
        self.target = len(self.seen) + more
        self.reached.clear()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.add((request.path, request.headers["webhook-id"]))
        if len(self.seen) >= self.target:
            self.reached.set()
        return web.Response(text="ok")


async def admin_headers(client: TestClient) -> dict[str, str]:
    _, token = await client.app[TOKENS].create("bench", "bench", "admin")
    return {"Authorization": f"Bearer {token}"}


async def webhooks(endpoints: int, fanouts: int, burst: int) -> dict[str, Any]:
    counter = Counter()
    receiver_app = web.Application()
    receiver_app.router.add_post("/hook/{n}", counter.handle)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            {}, data_dir=Path(tmp), webhook_allow=("127.0.0.1",), retry_schedule=(1, 5)
        )
        async with (
            TestServer(receiver_app, host="127.0.0.1", port=0) as receiver,
            TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client,
        ):
            headers = await admin_headers(client)
            for n in range(endpoints):
                url = str(receiver.make_url(f"/hook/{n}"))
                async with client.post("/api/webhooks", json={"url": url}, headers=headers) as r:
                    assert r.status == 201, await r.text()
            body = {"title": "基准测试", "severity": "minor"}
            async with client.post("/api/incidents", json=body, headers=headers) as response:
                path = f"/api/incidents/{(await response.json())['id']}/entries"
            times = []
            for _ in range(fanouts):
                counter.expect(endpoints)
                started = time.perf_counter()
                async with client.post(path, json={"body": BODY}, headers=headers) as response:
                    assert response.status == 201
                await asyncio.wait_for(counter.reached.wait(), 60)
                times.append(time.perf_counter() - started)
            # Burst: queue the entries with every endpoint paused, then resume them all,
            # so the figure is the worker's rate, not the rate of posting.
            for n in range(endpoints):
                async with client.post(f"/api/webhooks/{n + 1}/pause", headers=headers) as r:
                    assert r.status == 200, await r.text()
            entries = max(1, burst // endpoints)
            for _ in range(entries):
                async with client.post(path, json={"body": BODY}, headers=headers) as response:
                    assert response.status == 201
            counter.expect(entries * endpoints)
            started = time.perf_counter()
            resumed = await asyncio.gather(
                *(
                    client.post(f"/api/webhooks/{n + 1}/resume", headers=headers)
                    for n in range(endpoints)
                )
            )
            assert all(r.status == 200 for r in resumed)
            try:
                await asyncio.wait_for(counter.reached.wait(), 300)
            except TimeoutError:
                raise SystemExit(f"stuck: {await states(client)}") from None
            elapsed = time.perf_counter() - started
    return {
        "endpoints": endpoints,
        "fanout_median_ms": statistics.median(times) * 1000,
        "fanout_max_ms": max(times) * 1000,
        "burst": entries * endpoints,
        "per_second": entries * endpoints / elapsed,
    }


async def states(client: TestClient) -> dict[str, int]:
    """Count deliveries by state (to explain a run that never completes)."""

    def job(conn: Any) -> dict[str, int]:
        rows = conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        return dict(rows.fetchall())

    return await client.app[DB].read(job)


async def sms(subscribers: int, rate: int) -> dict[str, Any]:
    from kannel_gateway import running_kannel

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        async with running_kannel(Path(tmp), mo_url=None) as lab:
            sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
            settings = Settings.from_env(
                {},
                data_dir=Path(tmp) / "data",
                public_url=f"http://127.0.0.1:{port}",
                sms_gateway=f"kannel+{sendsms}?from=12379",
                sms_rate=rate,
            )
            app = create_app(settings)
            async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
                headers = await admin_headers(client)
                body = {"title": "基准测试", "severity": "minor", "code": "BENCH"}
                async with client.post("/api/incidents", json=body, headers=headers) as response:
                    incident = (await response.json())["id"]

                def insert(conn: Any) -> None:
                    conn.executemany(
                        "INSERT INTO sms_subscribers (incident, number, created_at, source)"
                        " VALUES (?, ?, '2026-01-01T00:00:00.000Z', 'bench')",
                        [(incident, f"+86138{n:08d}") for n in range(subscribers)],
                    )

                await client.app[DB].write(insert)
                started = time.perf_counter()
                path = f"/api/incidents/{incident}/entries"
                async with client.post(
                    path, json={"body": "请立即转移。", "sms": True}, headers=headers
                ) as response:
                    assert response.status == 201
                posted = time.perf_counter() - started
                received = 0
                handed = None
                while received < subscribers:
                    await lab.smsc.next_mt_message(60)
                    received += 1
                    if handed is None and received % 500 == 0:
                        handed = await _all_handed(client, subscribers, started)
                smsc_done = time.perf_counter() - started
                if handed is None:
                    handed = await _all_handed(client, subscribers, started, wait=True)
    return {
        "subscribers": subscribers,
        "rate_limit": rate,
        "post_ms": posted * 1000,
        "handed_s": handed,
        "received_s": smsc_done,
        "per_second": subscribers / smsc_done,
    }


async def _all_handed(
    client: TestClient, subscribers: int, started: float, wait: bool = False
) -> float | None:
    """Return seconds since ``started`` once no SMS is pending any more (else ``None``)."""

    def pending(conn: Any) -> int:
        return conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'sms' AND state = 'pending'"
        ).fetchone()[0]

    while True:
        if await client.app[DB].read(pending) == 0:
            return time.perf_counter() - started
        if not wait:
            return None
        await asyncio.sleep(0.05)


def dump_tasks() -> None:
    """Print what every task waits for (``kill -USR2`` a run that seems stuck)."""
    for task in asyncio.all_tasks():
        print("task", task.get_name(), file=sys.stderr)
        task.print_stack(limit=6, file=sys.stderr)


async def main() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--sms-rate", type=int, default=1000)
    parser.add_argument("--fanouts", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--no-sms", action="store_true")
    args = parser.parse_args()
    print(f"# delivery benchmark, {platform.node()}, Python {platform.python_version()}")
    print("| endpoints | fan-out of one entry (median / worst) | burst | deliveries/s |")
    print("| --- | --- | --- | --- |")
    for endpoints in (1, 10, 100):
        r = await webhooks(endpoints, args.fanouts, args.burst)
        print(
            f"| {r['endpoints']} | {r['fanout_median_ms']:.0f} ms / {r['fanout_max_ms']:.0f} ms"
            f" | {r['burst']} | {r['per_second']:.0f} |",
            flush=True,
        )
    if args.no_sms:
        return
    r = await sms(args.subscribers, args.sms_rate)
    print()
    print("| subscribers | rate limit | POST | all handed to Kannel | all at SMSC | SMS/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {r['subscribers']} | {r['rate_limit']}/s | {r['post_ms']:.0f} ms"
        f" | {r['handed_s']:.1f} s | {r['received_s']:.1f} s | {r['per_second']:.0f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
