"""Soak ``broadcaster serve`` with everything at once and report memory, latency and errors.

For ``--seconds`` (default 120) it runs, against one real server process on a
fresh data directory:

* ``--viewers`` WebSocket followers (default 2,000; ``tests/faults/clients.py``,
  raw asyncio, reconnecting with ``after=``) on one incident, ``--probes`` of
  which time each entry's arrival;
* posts at ``--post-rate`` entries per second through the API (durable 201s);
* feed polling at ``--poll-rate`` requests per second (Atom, JSON Feed, the
  entries API), half of them conditional (``If-None-Match``);
* ``--webhooks`` subscribed endpoints (in this process, on loopback) that
  receive a signed delivery per entry.

Before the measured run, ``--preload`` entries (default 300) are posted and
both feeds read after each, so that the feed cache is warm. The server's RSS
is sampled every second. At the end the viewers must hold
every seq exactly once and each endpoint every entry; anything else, and any
non-2xx/304 answer or exception, counts as an error. Memory growth compares
the mean RSS of the last third of the run with the first third.

Usage::

    .venv/bin/python bench/soak.py [--seconds 120] [--viewers 2000] [--post-rate 2]
        [--poll-rate 20] [--webhooks 2] [--preload 300] [--json FILE]

Exit status 1 if there were errors or memory grew more than ``--max-growth``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # tests/faults/clients.py imports bench.wsclient

from faults.clients import Follower, gapless  # noqa: E402
from serve_process import ServeProcess  # noqa: E402

from bench.append import ranked  # noqa: E402


class TimedFollower(Follower):
    """A follower that also notes when each seq arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived: dict[int, float] = {}

    def got(self, seq: int) -> None:
        super().got(seq)
        self.arrived.setdefault(seq, time.monotonic())


class Endpoint:
    """A webhook receiver counting deliveries by entry seq."""

    def __init__(self) -> None:
        self.seqs: dict[int, int] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        seq = int(body["data"]["seq"])
        self.seqs[seq] = self.seqs.get(seq, 0) + 1
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"


def rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ranked(ordered, q) * 1000

    found = {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000}
    return {"n": len(ordered), **{k: round(v, 1) for k, v in found.items()}}


class Soak:
    """Drive one server with every kind of traffic and keep the score."""

    def __init__(self, args: argparse.Namespace, server: ServeProcess) -> None:
        self.args = args
        self.server = server
        self.errors: list[str] = []
        self.latency: dict[str, list[float]] = {"post": [], "feed": [], "api": []}
        self.posted: dict[int, float] = {}
        self.memory: list[tuple[float, int]] = []
        self.stop = asyncio.Event()

    def error(self, what: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors.append("...")

    async def timed(self, kind: str, session: aiohttp.ClientSession, method: str, url: str,
                    **kwargs: Any) -> Any:  # fmt: skip
        started = time.monotonic()
        try:
            async with session.request(method, url, **kwargs) as response:
                data = await response.read()
                if response.status not in (200, 201, 304):
                    self.error(f"{method} {url}: {response.status} {data[:200]!r}")
                    return None
                self.latency[kind].append(time.monotonic() - started)
                return response, data
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.error(f"{method} {url}: {type(exc).__name__} {exc}")
            return None

    async def poster(self, session: aiohttp.ClientSession, incident: str) -> None:
        url = f"{self.server.base}/api/incidents/{incident}/entries"
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"body": f"第{n}次通报：水位持续上涨，请沿河居民立即转移。" * 4}
            sent = time.monotonic()
            answer = await self.timed("post", session, "POST", url, json=body)
            if answer is not None:
                self.posted[json.loads(answer[1])["seq"]] = sent
            await asyncio.sleep(1 / self.args.post_rate)

    async def poller(self, session: aiohttp.ClientSession, incident: str) -> None:
        base = self.server.base
        urls = [f"{base}/feed.atom", f"{base}/incidents/{incident}/feed.json",
                f"{base}/api/incidents/{incident}/entries?limit=20"]  # fmt: skip
        etags: dict[str, str] = {}
        n = 0
        while not self.stop.is_set():
            url = urls[n % len(urls)]
            headers = {"If-None-Match": etags[url]} if n % 2 and url in etags else {}
            kind = "api" if "/api/" in url else "feed"
            answer = await self.timed(kind, session, "GET", url, headers=headers)
            if answer is not None and "ETag" in answer[0].headers:
                etags[url] = answer[0].headers["ETag"]
            n += 1
            await asyncio.sleep(1 / self.args.poll_rate)

    async def preload(self, session: aiohttp.ClientSession, incident: str) -> dict[str, float]:
        """Post ``--preload`` entries, reading both feeds after each, to fill the caches.

        The feed cache keeps ``channels.feeds.serve.CACHE_SIZE`` renders of up to
        ``INCIDENT_LIMIT`` entries: it fills over the first few hundred posts,
        and that warm-up is not a leak, so it happens before the measured run.
        """
        pid = self.server.process.pid
        before = rss(pid)
        base = f"{self.server.base}/api/incidents/{incident}/entries"
        for n in range(self.args.preload):
            async with session.post(base, json={"body": f"预热第{n}条。" * 40}) as response:
                assert response.status == 201, await response.text()
            for url in (f"{self.server.base}/feed.atom",
                        f"{self.server.base}/incidents/{incident}/feed.json"):  # fmt: skip
                async with session.get(url) as response:
                    await response.read()
        return {"entries": self.args.preload, "rss_before_mib": round(before / 2**20, 1),
                "rss_after_mib": round(rss(pid) / 2**20, 1)}  # fmt: skip

    async def sampler(self) -> None:
        pid = self.server.process.pid
        start = time.monotonic()
        while not self.stop.is_set():
            self.memory.append((time.monotonic() - start, rss(pid)))
            await asyncio.sleep(1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.viewers * 2 + 1024), hard))
    os.environ["BROADCASTER_WEBHOOK_ALLOW"] = "127.0.0.1"
    data = Path(tempfile.mkdtemp(prefix="soak-")) / "data"
    # Every viewer connects from 127.0.0.1: lift the per-client cap of live connections.
    uncapped = {"BROADCASTER_MAX_LIVE_PER_CLIENT": "1000000"}
    server = await asyncio.to_thread(ServeProcess(data, env=uncapped).start, 60)
    soak = Soak(args, server)
    endpoints = [Endpoint() for _ in range(args.webhooks)]
    followers: list[TimedFollower] = []
    tasks: list[asyncio.Task[Any]] = []
    headers = {"Authorization": f"Bearer {server.tokens()[0]}"}
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            body = {"title": "浸泡测试：持续强降雨", "severity": "severe"}
            async with session.post(f"{server.base}/api/incidents", json=body) as response:
                incident = (await response.json())["id"]
            preload = await soak.preload(session, incident)
            for endpoint in endpoints:
                await endpoint.start()
                hook = {"url": endpoint.url, "incidents": [incident]}
                async with session.post(f"{server.base}/api/webhooks", json=hook) as response:
                    assert response.status == 201, await response.text()
            gate = asyncio.Semaphore(256)
            followers = [
                TimedFollower(server.port, incident, after=args.preload)
                for _ in range(args.viewers)
            ]
            tasks = [asyncio.create_task(f.run(gate)) for f in followers]
            connected = time.monotonic()
            while sum(f.connects for f in followers) < args.viewers:
                if time.monotonic() - connected > 120:
                    raise RuntimeError("the viewers did not all connect within 120 s")
                await asyncio.sleep(0.1)
            print(f"{args.viewers} viewers connected in {time.monotonic() - connected:.1f} s",
                  flush=True)  # fmt: skip
            load = [soak.poster(session, incident), soak.poller(session, incident), soak.sampler()]
            work = [asyncio.create_task(job) for job in load]
            await asyncio.sleep(args.seconds)
            soak.stop.set()
            await asyncio.gather(*work)
            head = max(soak.posted, default=0)
            drain = time.monotonic() + 60
            while time.monotonic() < drain:
                viewers_done = all(f.last >= head for f in followers)
                hooks_done = all(len(e.seqs) >= head - args.preload for e in endpoints)
                if viewers_done and hooks_done:
                    break
                await asyncio.sleep(0.1)
    finally:
        for follower in followers:
            follower.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in endpoints:
            if endpoint.runner is not None:
                await endpoint.runner.cleanup()
        server.stop()
    result = report(args, soak, followers, endpoints, head)
    result["preload"] = preload
    return result


def report(args: argparse.Namespace, soak: Soak, followers: list[TimedFollower],
           endpoints: list[Endpoint], head: int) -> dict[str, Any]:  # fmt: skip
    gaps = [f for f in followers if not gapless(f, head)]
    for follower in gaps[:5]:
        soak.error(f"a viewer got {len(follower.seqs)} seqs, not {args.preload + 1}..{head}")
    if gaps:
        soak.error(f"{len(gaps)} of {len(followers)} viewers missed or repeated entries")
    reconnects = sum(f.connects - 1 for f in followers)
    for endpoint in endpoints:
        missing = [s for s in range(args.preload + 1, head + 1) if s not in endpoint.seqs]
        if missing:
            soak.error(f"webhook {endpoint.url} missed {len(missing)} entries")
    fanout = [
        f.arrived[seq] - soak.posted[seq]
        for f in followers[: args.probes]
        for seq in soak.posted
        if seq in f.arrived
    ]
    samples = [m for _, m in soak.memory]
    third = max(1, len(samples) // 3)
    first, last = statistics.mean(samples[:third]), statistics.mean(samples[-third:])
    return {
        "seconds": args.seconds,
        "viewers": args.viewers,
        "entries_posted_while_measured": head - args.preload,
        "webhook_deliveries": sum(sum(e.seqs.values()) for e in endpoints),
        "webhook_duplicates": sum(c - 1 for e in endpoints for c in e.seqs.values()),
        "reconnects": reconnects,
        "errors": len(soak.errors),
        "error_samples": soak.errors[:10],
        "rss_mib": {
            "first_third": round(first / 2**20, 1),
            "last_third": round(last / 2**20, 1),
            "max": round(max(samples) / 2**20, 1),
            "growth": round(last / first - 1, 4),
            "every_10s": [round(m / 2**20, 1) for t, m in soak.memory if int(t) % 10 == 0],
        },
        "latency_ms": {
            "post": percentiles(soak.latency["post"]),
            "feed": percentiles(soak.latency["feed"]),
            "api": percentiles(soak.latency["api"]),
            "post_sent_to_viewer": percentiles(fanout),
        },
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--post-rate", type=float, default=2)
    parser.add_argument("--poll-rate", type=float, default=20)
    parser.add_argument("--webhooks", type=int, default=2)
    parser.add_argument("--preload", type=int, default=300)
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    failed = result["errors"] > 0 or result["rss_mib"]["growth"] > args.max_growth
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
