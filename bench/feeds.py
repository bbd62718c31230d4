"""Measure requests/s of a cached feed against nginx serving the same bytes, in one run.

Starts ``broadcaster serve`` (one process) on a free loopback port with a
temporary data directory, creates an incident with 30 entries, fetches its
Atom feed, writes those exact bytes into a temporary nginx root, and starts
nginx (one worker, like the one Python process, access log off, sendfile on)
with its own config on another loopback port. Then ``wrk`` loads both, the
same way, one after the other: full GETs (200) and conditional GETs carrying
each server's own ETag (304). The figure that matters is the ratio. With two
or more CPUs each server is pinned to CPU 0 and wrk to CPU 1 (``taskset``), so
both servers get exactly one core and never fight the load generator.

wrk shares the machine with the servers, so absolute numbers depend on the
box; the ratio is what the target (at least half of nginx) is about.
Usage::

    .venv/bin/python bench/feeds.py [--seconds 10] [--connections 64] [--threads 1]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.append import free_port, start_server  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
NGINX = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/atom+xml atom; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        location / {{ add_header Cache-Control no-cache; }}
    }}
}}
"""


def pin(cpu: int) -> list[str]:
    """Return a ``taskset`` prefix so server and load generator do not share a core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def call(base: str, token: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return dict(json.load(response))


def start_nginx(prefix: Path, port: int) -> subprocess.Popen[bytes]:
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX.format(prefix=prefix, port=port))
    return subprocess.Popen(
        [*pin(SERVER_CPU), "/usr/sbin/nginx", "-p", str(prefix), "-c", str(conf)],
        stderr=subprocess.DEVNULL,
    )


def wrk(url: str, args: argparse.Namespace, etag: str | None = None) -> float:
    """Run wrk and return its requests/s (raises if any request failed)."""
    command = [
        *pin(CLIENT_CPU),
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
    ]
    if etag:
        command += ["-H", f"If-None-Match: {etag}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def etag_of(url: str) -> str:
    with urllib.request.urlopen(url) as response:
        return str(response.headers["ETag"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--entries", type=int, default=30)
    args = parser.parse_args()
    for tool in ("wrk", "/usr/sbin/nginx"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-feeds-"))
    workdir.chmod(0o755)  # nginx's worker drops root and must read www/
    ours_port, nginx_port = free_port(), free_port()
    base = f"http://127.0.0.1:{ours_port}"
    server, token = start_server(workdir / "data", ours_port, pin(SERVER_CPU))
    nginx = None
    try:
        wait_for(base + "/healthz")
        incident = call(
            base, token, "/api/incidents", {"title": "崂山区山洪", "severity": "severe"}
        )
        for n in range(args.entries):
            body = {"body": f"第{n + 1}次通报：沙子口街道沿河居民请立即向高处转移，请勿涉水通行。"}
            call(base, token, f"/api/incidents/{incident['id']}/entries", body)
        feed_url = f"{base}/incidents/{incident['id']}/feed.atom"
        with urllib.request.urlopen(feed_url) as response:
            feed = response.read()
        (workdir / "www").mkdir()
        (workdir / "www" / "feed.atom").write_bytes(feed)
        nginx = start_nginx(workdir, nginx_port)
        nginx_url = f"http://127.0.0.1:{nginx_port}/feed.atom"
        wait_for(nginx_url)
        results = {}
        for name, url in (("broadcaster", feed_url), ("nginx", nginx_url)):
            wrk(url, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
            results[name] = {"200": wrk(url, args), "304": wrk(url, args, etag_of(url))}
        report = {
            "feed_bytes": len(feed),
            "results": results,
            "ratio_200": round(results["broadcaster"]["200"] / results["nginx"]["200"], 3),
            "ratio_304": round(results["broadcaster"]["304"] / results["nginx"]["304"], 3),
            "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds}s",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        server.terminate()
        server.wait(10)
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
