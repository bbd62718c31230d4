"""Measure acknowledged appends per second and POST latency against a real server.

Starts ``broadcaster serve`` as a subprocess on a free loopback port with a
temporary data directory (durability on, as always: every 201 means the entry
is fsynced), reads the admin token it prints once, then runs N concurrent
posters with a lean aiohttp client in this process: first all on one
incident, then spread over 20 incidents. Only answers with status 201 count
as acknowledged; anything else is reported as an error. A reference case
(the same clients on ``GET /healthz``: HTTP only, no store) runs in the same
process, so the ratios hold even when other work shares the machine.

The client shares the machine with the server, so on a small box the figures
are a lower bound for the server alone. Usage::

    .venv/bin/python bench/append.py [--posters 16] [--seconds 10] [--warmup 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BODY = "水位持续上涨，沙子口街道沿河居民请立即向高处转移。**请勿**涉水通行。"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path, port: int, launcher: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], str]:
    """Start ``broadcaster serve`` and return it with the admin token it prints.

    ``launcher`` prefixes the command (bench/feeds.py pins the server to a CPU
    with ``taskset``).
    """
    env = {**os.environ, "BROADCASTER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*launcher, sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"\b(bct_[A-Za-z0-9_-]+)", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the server exited without printing an admin token")


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the server did not become ready in 30 s")


async def poster(
    session: aiohttp.ClientSession,
    urls: list[str],
    index: int,
    stop_at: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    """Post entries in a loop until ``stop_at``, recording each acknowledged latency."""
    url = urls[index % len(urls)]
    payload = json.dumps({"body": BODY}, ensure_ascii=False).encode("utf-8")
    reference = url.endswith("/healthz")
    expected = 200 if reference else 201
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        request = session.get(url) if reference else session.post(url, data=payload)
        async with request as response:
            await response.read()
            elapsed = time.perf_counter() - started
            if response.status == expected:
                latencies.append(elapsed)
            else:
                errors.append(response.status)


def ranked(ordered: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank ``fraction`` quantile of ``ordered``, which must be sorted.

    The benchmarks all report this one definition (p50, p99, max = 1.0).
    """
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def percentile(values: list[float], fraction: float) -> float:
    return ranked(sorted(values), fraction)


async def run_case(
    session: aiohttp.ClientSession, urls: list[str], posters: int, seconds: float, warmup: float
) -> dict[str, float | int]:
    """Warm up, then post for ``seconds`` with ``posters`` concurrent clients."""
    for phase, duration in (("warmup", warmup), ("measure", seconds)):
        latencies: list[float] = []
        errors: list[int] = []
        started = time.monotonic()
        stop_at = started + duration
        await asyncio.gather(
            *(poster(session, urls, i, stop_at, latencies, errors) for i in range(posters))
        )
        elapsed = time.monotonic() - started
        if phase == "measure":
            return {
                "acked": len(latencies),
                "errors": len(errors),
                "appends_per_s": round(len(latencies) / elapsed, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "max_ms": round(max(latencies) * 1000, 2),
            }
    raise AssertionError("unreachable")


async def bench(args: argparse.Namespace) -> dict[str, object]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-append-") as tmp:
        port = free_port()
        process, token = start_server(Path(tmp) / "data", port)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=args.posters)
        try:
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                await wait_ready(session, base)
                ids = []
                for n in range(20):
                    body = {"title": f"基准测试事件 {n}", "severity": "severe"}
                    async with session.post(base + "/api/incidents", json=body) as response:
                        ids.append((await response.json())["id"])
                urls = [f"{base}/api/incidents/{i}/entries" for i in ids]
                reference = await run_case(
                    session, [base + "/healthz"], args.posters, args.seconds, args.warmup
                )
                one = await run_case(session, urls[:1], args.posters, args.seconds, args.warmup)
                many = await run_case(session, urls, args.posters, args.seconds, args.warmup)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "bench": "append",
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "posters": args.posters,
        "seconds": args.seconds,
        # Other work on the machine shares its CPUs: figures under load are lower bounds.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "healthz_reference": reference,
        "one_incident": one,
        "twenty_incidents": many,
        "one_incident_vs_healthz": round(one["appends_per_s"] / reference["appends_per_s"], 3),
        "twenty_incidents_vs_healthz": round(many["appends_per_s"] / reference["appends_per_s"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=16, help="concurrent posting clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time per case")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(f"{'case':<18}{'ok/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
    for case in ("healthz_reference", "one_incident", "twenty_incidents"):
        row = result[case]
        assert isinstance(row, dict)
        print(
            f"{case:<18}{row['appends_per_s']:>10}{row['p50_ms']:>10}"
            f"{row['p99_ms']:>10}{row['max_ms']:>10}{row['errors']:>8}"
        )
    print(f"1-minute load average before/after: {result['load_avg_1m']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
