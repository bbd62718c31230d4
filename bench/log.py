"""Measure what the transparency log costs an append, and its tiles through nginx's cache.

Appends: ``broadcaster serve`` on SQLite (durable, as always) with the log,
driven like ``bench/append.py`` (N posters, one incident then 20), against two
same-run references: ``GET /healthz`` (HTTP only, no store) and, with
``--baseline REV``, the same cases on the code of git revision ``REV`` (the
commit before the log), exported to a temporary directory and started from
there. Log and baseline rounds alternate (``--rounds``), so a burst of other
work on a shared machine hits both; the best round of each is reported with
every round alongside.

Tiles: the server is then filled to ``--leaves`` leaves, and ``wrk`` fetches a
full entry bundle and a full hash tile from the node directly, then through
nginx running ``deploy/nginx.conf``'s ``/log/tile/`` location (cache primed
by one request), reporting requests/s and the cache status nginx answered.

    .venv/bin/python bench/log.py [--posters 16] [--seconds 10] [--baseline REV] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.append import free_port, run_case, start_server, wait_ready  # noqa: E402
from bench.feeds import pin, wrk  # noqa: E402

CASES = ("healthz", "one_incident", "twenty_incidents")
#: One case's figures, as ``bench.append.run_case`` returns them.
Case = dict[str, float | int]
#: Starts a server on a data directory and port; returns it and its admin token.
Starter = Callable[[Path, int], tuple[subprocess.Popen[str], str]]
NGINX = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream broadcaster {{ server 127.0.0.1:{upstream}; keepalive 16; }}
{cache_path}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
{location}
    }}
}}
"""


def deploy_tile_config() -> tuple[str, str]:
    """Return deploy/nginx.conf's tile cache path line and its /log/tile/ location block."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    cache = re.search(r"^ *proxy_cache_path [^\n]*keys_zone=tiles[^\n]*\n", text, re.M)
    location = re.search(r"^ *location /log/tile/ \{.*?^ *\}\n", text, re.M | re.S)
    if not cache or not location:
        raise RuntimeError("deploy/nginx.conf has no /log/tile/ cache")
    return cache.group(0), location.group(0)


def export_revision(rev: str, target: Path) -> Path:
    """Write the tree of git revision ``rev`` into ``target``; return it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def start_server_from(tree: Path, data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``broadcaster serve`` from the source tree ``tree`` (a baseline revision)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "BROADCASTER_DATA_DIR": str(data_dir),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "broadcaster.cli", "serve", "--port", str(port)],
        cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"\b(bct_[A-Za-z0-9_-]+)", line):
            return process, match.group(1)
    raise RuntimeError("the baseline server exited without printing an admin token")


async def append_cases(base: str, token: str, args: argparse.Namespace) -> dict[str, Case]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.posters)
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
    return {"healthz": reference, "one_incident": one, "twenty_incidents": many}


def run_appends(start: Starter, workdir: Path, args: argparse.Namespace) -> dict[str, Case]:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    process, token = start(data, port)
    try:
        return asyncio.run(append_cases(f"http://127.0.0.1:{port}", token, args))
    finally:
        process.terminate()
        process.wait(timeout=30)


def fill(base: str, token: str, leaves: int) -> None:
    """Append until the log has ``leaves`` leaves and a checkpoint covers them."""

    async def run() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            await wait_ready(session, base)
            async with session.post(
                base + "/api/incidents", json={"title": "瓦片基准", "severity": "minor"}
            ) as response:
                incident = (await response.json())["id"]
            url = f"{base}/api/incidents/{incident}/entries"

            async def post(n: int) -> None:
                async with session.post(url, json={"body": f"第{n}次通报"}) as response:
                    assert response.status == 201

            for start in range(0, leaves - 1, 64):
                await asyncio.gather(*(post(n) for n in range(start, min(leaves - 1, start + 64))))
            while True:
                async with session.get(base + "/log/checkpoint") as response:
                    if int((await response.text()).split("\n")[1]) >= leaves:
                        return
                await asyncio.sleep(0.1)

    asyncio.run(run())


def tiles_through_nginx(workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    port, nginx_port = free_port(), free_port()
    process, token = start_server(workdir / "tiles-data", port, pin(0))
    prefix = workdir / "nginx"
    prefix.mkdir()
    cache_line, location = deploy_tile_config()
    cache_line = cache_line.replace("/var/cache/nginx/broadcaster-log", str(prefix / "cache"))
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX.format(prefix=prefix, port=nginx_port, upstream=port,
                                 cache_path=cache_line, location=location))  # fmt: skip
    nginx = subprocess.Popen([*pin(0), "/usr/sbin/nginx", "-p", str(prefix), "-c", str(conf)],
                             stderr=subprocess.DEVNULL)  # fmt: skip
    results: dict[str, object] = {"leaves": args.leaves}
    load = argparse.Namespace(**{**vars(args), "seconds": max(1, round(args.seconds))})
    try:
        base = f"http://127.0.0.1:{port}"
        fill(base, token, args.leaves)
        for name, path in (("entry_bundle", "/log/tile/entries/000"),
                           ("hash_tile", "/log/tile/0/000")):  # fmt: skip
            via = f"http://127.0.0.1:{nginx_port}{path}"
            statuses = []
            for _ in range(2):  # the first fills the cache, the second must be a HIT
                with urllib.request.urlopen(via) as response:
                    statuses.append(response.headers.get("X-Cache"))
                    size = len(response.read())
            results[name] = {
                "bytes": size,
                "x_cache": statuses,
                "node_req_per_s": round(wrk(base + path, load)),
                "nginx_req_per_s": round(wrk(via, load)),
            }
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        process.terminate()
        process.wait(timeout=30)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", help="git revision without the log, to compare against")
    parser.add_argument("--leaves", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-log-"))
    workdir.chmod(0o755)
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[dict[str, Case]]] = {"log": [], "baseline": []}
    try:
        tree = None
        if args.baseline:
            tree = export_revision(args.baseline, Path(tempfile.mkdtemp(dir=workdir)))
        for _ in range(args.rounds):
            rounds["log"].append(run_appends(start_server, workdir, args))
            if tree is not None:
                rounds["baseline"].append(run_appends(
                    lambda d, p: start_server_from(tree, d, p), workdir, args))  # fmt: skip
        tiles = tiles_through_nginx(workdir, args) if shutil.which("wrk") else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def best(name: str, case: str) -> Case | None:
        found = [r[case] for r in rounds[name]]
        return max(found, key=lambda c: c["appends_per_s"]) if found else None

    result = {
        "bench": "log",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "posters": args.posters,
        "seconds": args.seconds,
        "baseline": args.baseline,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "best": {
            name: {
                case: best(name, case) for case in ("healthz", "one_incident", "twenty_incidents")
            }
            for name in rounds
            if rounds[name]
        },
        "rounds": rounds,
        "tiles": tiles,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
