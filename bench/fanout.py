"""Measure live fan-out against nginx + nchan in the same run, and report ratios.

For each run (``SUBSCRIBERSxRATE``) and each target, it starts the server
(``broadcaster serve`` on a fresh data directory, or nginx with nchan), opens
N subscribers (WebSocket, or Server-Sent Events with ``--transport sse``
against nchan's EventSource) on one incident/channel from ``--procs`` client
processes (``bench/wsclient.py``: raw asyncio, no JSON decoding), measures the
server's RSS before and after they connect (memory per idle connection), then
publishes at R messages per second for ``--seconds`` through the real API
(``POST /api/incidents/{id}/entries``, durable: every 201 is fsynced) or
nchan's publisher location. Each message body carries the poster's clock, so
latency is publish (just before the POST) to receive, over every subscriber.
Before the measured window, ``--warmup`` seconds of unmarked messages at the
same rate let both servers settle after the connection burst.

Reported per target: loss (messages a subscriber never got), duplicates,
latency p50/p99/max, deliveries per second, server CPU per delivered message
(utime+stime from /proc/<pid>/stat, all threads, over the publishing window
plus the drain) and server RSS per idle connection. Client and server share
the machine's cores, so both targets are measured under the same handicap.

With ``floor`` among the targets, ``bench/floor.py`` runs too: a bare CPython
fan-out (no framework, no store, no durability), the least a Python server
does per viewer, so that what separates Broadcaster from nchan can be split
into what CPython costs and what Broadcaster adds.

Pauses: each viewer keeps the longest time between two of its messages
(``gap``: 1/R when nothing stalls); Broadcaster also records its garbage
collections and event-loop stalls over 5 ms (``bench/serve.py``), and the
longest of each inside the publishing window is reported, with the most CPU
time the loop's thread spent inside one stall (the rest of a stall is waiting
for a core or the GIL).

nchan is sent messages padded to the size of Broadcaster's entry frames
(about 1 KB), so both move the same bytes. Targets alternate for ``--rounds``
rounds and the medians are compared, with the spread of the per-round ratio
of p99s (min/median/max); the 1-minute load average is reported, because
other work on the machine moves every figure.

Usage::

    .venv/bin/python bench/fanout.py --runs 5000x10,10000x2 [--seconds 20]
        [--rounds 3] [--procs 2] [--targets broadcaster,broadcaster[task],floor,nchan]
        [--transport ws|sse]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
# Import the project (and ``bench``) from the repository root.
sys.path[0] = str(ROOT)

from bench import nchan  # noqa: E402
from bench.append import ranked  # noqa: E402
from bench.wsclient import read_results  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
DRAIN_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


class Target:
    """A server under test: start it, say where to subscribe, publish one message."""

    name = ""
    path = ""
    frame_size = 0

    def __init__(self, port: int, sse: bool) -> None:
        self.port = port
        self.sse = sse

    def pauses(self, begin: float, end: float) -> dict[str, float]:
        """Return the longest GC pause and loop stall between ``begin`` and ``end``."""
        return {}

    def pids(self) -> list[int]:
        raise NotImplementedError

    async def start(self, session: aiohttp.ClientSession) -> None:
        raise NotImplementedError

    async def publish(self, session: aiohttp.ClientSession, body: str) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class Broadcaster(Target):
    process: asyncio.subprocess.Process

    def __init__(self, port: int, sse: bool, variant: str) -> None:
        super().__init__(port, sse)
        self.variant = variant
        self.recorded: dict[str, list[list[float]]] = {}
        self.name = "broadcaster" if variant == "direct" else f"broadcaster[{variant}]"
        self.token = ""
        self.base = f"http://127.0.0.1:{port}"

    def pids(self) -> list[int]:
        return [self.process.pid]

    async def stop(self) -> None:
        self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(OSError, ValueError):
            self.recorded = json.loads(Path(self.pauses_file).read_text())  # noqa: ASYNC240
            os.unlink(self.pauses_file)

    def pauses(self, begin: float, end: float) -> dict[str, float]:
        gcs = [(d, g) for t, d, g in self.recorded.get("gc", []) if begin <= t <= end]
        stalls = [s[1:] for s in self.recorded.get("stalls", []) if begin <= s[0] <= end]
        worst = max(stalls, default=(0.0, 0.0, 0.0, 0.0))
        return {
            "gc_max_ms": round(max((d for d, _ in gcs), default=0) * 1000, 1),
            "gc_full": sum(1 for _, g in gcs if g == 2),
            "stall_max_ms": round(worst[0] * 1000, 1),
            "stalls_over_50ms": sum(1 for s in stalls if s[0] > 0.05),
            # the loop's own work: the most CPU its thread spent inside one stall
            "stall_cpu_max_ms": round(max((s[1] for s in stalls), default=0) * 1000, 1),
            # what the longest stall was made of: the loop thread waiting for a
            # core (the scheduler), and the CPU the whole process used meanwhile
            # (far above the loop's own: other threads held the GIL)
            "stall_queued_ms": round(worst[2] * 1000, 1),
            "stall_process_cpu_ms": round(worst[3] * 1000, 1),
            # from start to the end of the window: the connection burst included
            "gc_full_ever_max_ms": round(
                max(
                    (d for t, d, g in self.recorded.get("gc", []) if g == 2 and t <= end), default=0
                )
                * 1000,
                1,
            ),
        }

    async def start(self, session: aiohttp.ClientSession) -> None:
        data_dir = tempfile.mkdtemp(prefix="bench-fanout-")
        self.pauses_file = os.path.join(data_dir, "pauses.json")
        env = {
            **os.environ,
            "BROADCASTER_DATA_DIR": data_dir,
            "PYTHONUNBUFFERED": "1",
            "BENCH_PAUSES": self.pauses_file,
            # every viewer connects from 127.0.0.1: lift the per-client cap
            "BROADCASTER_MAX_LIVE_PER_CLIENT": "1000000",
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "serve.py"),
            self.variant,
            "--port",
            str(self.port),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            if match := re.search(r"\b(bct_[A-Za-z0-9_-]+)", line):
                self.token = match.group(1)
                break
        else:
            raise RuntimeError("the server printed no admin token")
        for _ in range(100):
            try:
                async with session.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {self.token}"}
        incident = {"title": "fan-out benchmark", "severity": "minor"}
        async with session.post(f"{self.base}/api/incidents", json=incident, headers=headers) as r:
            assert r.status == 201, await r.text()
            self.incident = (await r.json())["id"]
        await self.publish(session, f"bench n=0 t={time.time():.6f}")
        async with session.get(f"{self.base}/api/incidents/{self.incident}/entries/1") as r:
            # the size of a benchmark frame, so nchan can be sent as much per message
            self.frame_size = len(await r.read()) + len('{"type":"entry","entry":}')

    async def publish(self, session: aiohttp.ClientSession, body: str) -> None:
        async with session.post(
            f"{self.base}/api/incidents/{self.incident}/entries",
            json={"body": body},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"POST answered {response.status}: {await response.text()}")
        # the subscribers' backlog would include the warm-up; after=1 skips it
        if self.sse:
            self.path = f"/api/incidents/{self.incident}/events?after=1"
        else:
            self.path = f"/ws/incidents/{self.incident}?after=1"


class Nchan(Target):
    name = "nchan"
    process: subprocess.Popen[bytes]

    def __init__(self, port: int, sse: bool, nofile: int, frame_size: int) -> None:
        super().__init__(port, sse)
        self.path = "/sse" if sse else "/sub"
        self.nofile = nofile
        self.frame_size = frame_size

    def pids(self) -> list[int]:
        return [self.process.pid, *nchan.workers(self.process.pid)]

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.process, _ = await asyncio.to_thread(nchan.start, self.port, self.nofile)
        await self.publish(session, "warm-up")

    async def stop(self) -> None:
        await asyncio.to_thread(nchan.stop, self.process)

    async def publish(self, session: aiohttp.ClientSession, body: str) -> None:
        data = body.encode()
        data += b" " + b"x" * max(0, self.frame_size - len(data) - 1)  # same bytes as ours
        async with session.post(f"http://127.0.0.1:{self.port}/pub", data=data) as r:
            if r.status not in (200, 201, 202):
                raise RuntimeError(f"nchan publish answered {r.status}")


class Floor(Target):
    """``bench/floor.py``: a bare CPython fan-out, the floor for any Python server."""

    name = "floor"
    process: asyncio.subprocess.Process

    def __init__(self, port: int, sse: bool, frame_size: int) -> None:
        super().__init__(port, sse)
        self.path = "/sse" if sse else "/sub"
        self.frame_size = frame_size

    def pids(self) -> list[int]:
        return [self.process.pid]

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "floor.py"), str(self.port),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        await self.process.stdout.readline()  # listening
        await self.publish(session, "warm-up")

    async def stop(self) -> None:
        self.process.kill()
        await self.process.wait()

    async def publish(self, session: aiohttp.ClientSession, body: str) -> None:
        data = body.encode()
        data += b" " + b"x" * max(0, self.frame_size - len(data) - 1)  # same bytes as ours
        async with session.post(f"http://127.0.0.1:{self.port}/pub", data=data) as r:
            if r.status != 201:
                raise RuntimeError(f"floor publish answered {r.status}")


async def measure(
    target: Target, subscribers: int, rate: float, seconds: float, procs: int, warmup: float
) -> dict[str, Any]:
    """Run one target through connect, idle, warm-up, publish and drain; return its figures."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await target.start(session)
        clients: list[asyncio.subprocess.Process] = []
        outfiles: list[str] = []
        try:
            await asyncio.sleep(1)
            rss_before = rss_bytes(target.pids())
            started = time.monotonic()
            for index in range(procs):
                count = subscribers // procs + (1 if index < subscribers % procs else 0)
                outfile = tempfile.mktemp(prefix="bench-client-")
                outfiles.append(outfile)
                client = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.wsclient", "127.0.0.1", str(target.port),
                    target.path, str(count), outfile, *(["--sse"] if target.sse else []),
                    cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                clients.append(client)
            connected = failed = 0
            for client in clients:
                line = await client.stdout.readline()  # type: ignore[union-attr]
                ok, bad = (int(x) for x in line.split()[1:3])
                connected += ok
                failed += bad
            connect_seconds = time.monotonic() - started
            await asyncio.sleep(2)
            rss_after = rss_bytes(target.pids())
            # Unmarked messages first: the server settles (allocator, garbage
            # collector after thousands of new connections) outside the window.
            for _ in range(int(rate * warmup)):
                await target.publish(session, "warm-up")
                await asyncio.sleep(1 / rate)

            total = int(rate * seconds)
            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(target.pids())
            post_times: list[float] = []
            begin = time.monotonic()
            begin_wall = time.time()

            async def post(number: int) -> None:
                sent = time.time()
                await target.publish(session, f"bench n={number} t={sent:.6f}")
                post_times.append(time.time() - sent)

            # Open loop: each message leaves on schedule, whether or not the
            # previous answer came back, so a slow server gets the same load.
            posts = []
            for number in range(1, total + 1):
                delay = begin + (number - 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                posts.append(asyncio.create_task(post(number)))
            await asyncio.gather(*posts)
            publish_seconds = time.monotonic() - begin
            await asyncio.sleep(DRAIN_SECONDS)
            cpu_used = cpu_seconds(target.pids()) - cpu_before
            window = time.monotonic() - begin
            end_wall = time.time()

            latencies = array("d")
            gaps: list[int] = []
            first: dict[int, float] = {}
            unique = duplicates = closed = 0
            for client, outfile in zip(clients, outfiles, strict=True):
                client.stdin.write(b"stop\n")  # type: ignore[union-attr]
                await client.stdin.drain()  # type: ignore[union-attr]
                await client.stdout.readline()  # type: ignore[union-attr]
                header, samples, numbers = read_results(outfile)
                latencies.extend(samples)
                for number, latency in zip(numbers, samples, strict=True):
                    if latency < first.get(number, float("inf")):
                        first[number] = latency
                gaps.extend(header["gaps"])
                unique += header["unique"]
                duplicates += header["duplicates"]
                closed += header["closed"]
                os.unlink(outfile)
        finally:
            for client in clients:
                if client.returncode is None:
                    client.kill()
                await client.wait()
            await target.stop()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ranked(ordered, p) * 1000 if ordered else float("nan")

    post_times.sort()
    firsts = sorted(first.values())
    gaps.sort()
    return {
        "target": target.name,
        "subscribers": subscribers,
        "connected": connected,
        "failed": failed,
        "connect_s": round(connect_seconds, 1),
        "messages": total,
        "publish_rate": round(total / publish_seconds, 2),
        "lost": total * connected - unique,
        "duplicates": duplicates,
        "closed_during_run": closed,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else float("nan"),
        "deliveries_per_s": round(unique / window),
        "cpu_us_per_delivery": round(cpu_used / max(1, unique) * 1e6, 2),
        "cpu_s": round(cpu_used, 2),
        "kb_per_idle_conn": round((rss_after - rss_before) / max(1, connected) / 1024, 2),
        "post_p50_ms": round(post_times[len(post_times) // 2] * 1000, 2),
        "first_p50_ms": round(firsts[len(firsts) // 2] * 1000, 2) if firsts else float("nan"),
        "gap_p99_ms": ranked(gaps, 0.99) if gaps else float("nan"),
        "gap_max_ms": gaps[-1] if gaps else float("nan"),
        **target.pauses(begin_wall, end_wall),
        "frame_bytes": target.frame_size,
        "loadavg": round(max(load_before, os.getloadavg()[0]), 2),
    }


COLUMNS = (
    ("target", "target", 22),
    ("connected", "conns", 6),
    ("lost", "lost", 5),
    ("p50_ms", "p50 ms", 8),
    ("p99_ms", "p99 ms", 8),
    ("max_ms", "max ms", 8),
    ("deliveries_per_s", "deliv/s", 8),
    ("cpu_us_per_delivery", "CPU µs/msg", 10),
    ("kb_per_idle_conn", "KB/conn", 8),
    ("gap_max_ms", "gap max ms", 10),
    ("stall_max_ms", "stall max ms", 12),
    ("stall_cpu_max_ms", "stall CPU ms", 12),
    ("stall_queued_ms", "stall queued ms", 15),
    ("stall_process_cpu_ms", "stall proc CPU ms", 17),
    ("gc_max_ms", "GC max ms", 9),
    ("first_p50_ms", "1st rcv p50 ms", 14),
    ("post_p50_ms", "POST p50 ms", 11),
    ("loadavg", "load", 5),
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "-")) for key, _, _ in COLUMNS) + " |")
    return "\n".join(lines)


def ratios(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    keys = ("p50_ms", "p99_ms", "max_ms", "cpu_us_per_delivery", "kb_per_idle_conn", "gap_max_ms")
    row: dict[str, Any] = {key: "" for key, _, _ in COLUMNS}
    row["target"] = f"{ours['target']} / {ref['target']}"
    for key in keys:
        row[key] = f"{ours[key] / ref[key]:.2f}x" if ref[key] else "-"
    return row


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="5000x10,10000x2", help="SUBSCRIBERSxRATE,...")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--targets", default="broadcaster,nchan")
    parser.add_argument("--variant", default="direct", help="direct (shipped) or task")
    parser.add_argument("--rounds", type=int, default=3, help="alternate targets this often")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of unmeasured messages")
    parser.add_argument("--transport", choices=("ws", "sse"), default="ws")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    nofile = raise_nofile()
    results = []
    for run in args.runs.split(","):
        subscribers, rate = run.split("x")
        n, r = int(subscribers), float(rate)
        if n + 200 > nofile:
            raise SystemExit(f"ulimit -n is {nofile}: too low for {n} subscribers")
        print(f"\n## {n} {args.transport} subscribers, {r:g} msg/s, {args.seconds:g} s", flush=True)
        sse = args.transport == "sse"
        rows: dict[str, list[dict[str, Any]]] = {}
        frame_size = 800
        # Targets alternate, round after round, so that a noisy neighbour on the
        # machine weighs on both alike; the medians are compared.
        for _ in range(args.rounds):
            for name in args.targets.split(","):
                if name == "nchan":
                    if not nchan.available():
                        raise SystemExit(
                            "nchan is missing: apt-get install nginx libnginx-mod-nchan"
                        )
                    target: Target = Nchan(free_port(), sse, nofile, frame_size)
                elif name == "floor":
                    target = Floor(free_port(), sse, frame_size)
                else:
                    variant = name.partition("[")[2].rstrip("]") or args.variant
                    target = Broadcaster(free_port(), sse, variant)
                row = await measure(target, n, r, args.seconds, args.procs, args.warmup)
                frame_size = target.frame_size or frame_size
                print(json.dumps(row), flush=True)
                rows.setdefault(row["target"], []).append(row)
                results.append(row)
        medians = {name: median_row(found) for name, found in rows.items()}
        ref = medians.get("nchan")
        shown = list(medians.values())
        if ref is not None:
            shown += [ratios(row, ref) for name, row in medians.items() if name != "nchan"]
        print(f"medians of {args.rounds} rounds:")
        print(table(shown), flush=True)
        for name, found in rows.items():
            if name != "nchan" and "nchan" in rows:
                print(f"{name} / nchan p99, per round: {spread(found, rows['nchan'])}")
    if args.json:
        with open(args.json, "w") as out:  # noqa: ASYNC230 - once, at the very end
            json.dump(results, out, indent=1)


def spread(ours: list[dict[str, Any]], refs: list[dict[str, Any]]) -> str:
    """Return the min/median/max of the round-by-round ratio of p99s."""
    found = sorted(a["p99_ms"] / b["p99_ms"] for a, b in zip(ours, refs, strict=False))
    shown = (found[0], statistics.median(found), found[-1])
    return "min {:.2f}x, median {:.2f}x, max {:.2f}x".format(*shown)


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median of each figure over rounds (losses and pauses: the sum or the worst)."""
    merged: dict[str, Any] = dict(rows[0])
    for key, value in rows[0].items():
        if key in (
            "lost",
            "duplicates",
            "closed_during_run",
            "failed",
            "gc_full",
            "stalls_over_50ms",
        ):
            merged[key] = sum(row[key] for row in rows)
        elif key in (
            "gap_max_ms",
            "stall_max_ms",
            "stall_cpu_max_ms",
            "stall_queued_ms",
            "stall_process_cpu_ms",
            "gc_max_ms",
            "gc_full_ever_max_ms",
        ):
            merged[key] = max(row[key] for row in rows)
        elif isinstance(value, int) and key != "subscribers":
            merged[key] = statistics.median_low(row[key] for row in rows)
        elif isinstance(value, float):
            merged[key] = round(statistics.median(row[key] for row in rows), 2)
    return merged


if __name__ == "__main__":
    asyncio.run(main())
