"""Measure requests/s of a cached feed against nginx serving the same bytes, in one run.

Three servers answer for the same feed: ``broadcaster`` directly, ``proxy``
(nginx in front of it with the feed ``location`` of ``deploy/nginx.conf``
taken from that file as shipped: a 1 s cache, revalidated, ``X-Cache``
reported) and ``nginx`` serving the feed's bytes as a static file (the
reference); ``nginx+headers`` is the same file sent with every header
Broadcaster sends (security headers, CORS, ``Vary``), which a cache hit
repeats: it tells how much of the gap is those headers. After the load the
proxy's staleness is measured: an entry is posted and the proxied feed is
polled until it shows it.

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
        [--rounds 1] [--nginx-conf FILE ...]  # a proxy per FILE's feed location
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.append import free_port, start_server  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
#: What both nginx instances share: one worker, no logs, temp paths under the prefix.
COMMON = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/{pid}.pid;
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
"""
NGINX = COMMON.replace("{pid}", "nginx") + """\
    types {{ application/atom+xml atom; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        location / {{ add_header Cache-Control no-cache; }}
        location /headers/ {{
            alias {prefix}/www/;
{headers}
        }}
    }}
}}
"""


PROXY = COMMON.replace("{pid}", "proxy") + """\
    upstream broadcaster {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    proxy_cache_path {prefix}/cache keys_zone=feeds:10m max_size=256m inactive=10m;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
{location}
    }}
}}
"""
FEED_LOCATION = re.compile(r"^ *location ~ \^/\(incidents.*?feed.*?^ *}$", re.M | re.S)


def deploy_feed_location(conf: Path = ROOT / "deploy" / "nginx.conf") -> str:
    """Return the feed ``location`` block of ``conf`` (``deploy/nginx.conf``, as shipped)."""
    text = conf.read_text()
    found = FEED_LOCATION.search(text)
    if found is None:
        raise RuntimeError("deploy/nginx.conf has no feed location")
    return found.group(0)


#: Headers nginx writes itself, whatever ``add_header`` says, and hop-by-hop ones
#: (urllib asked for ``Connection: close``).
OWN_HEADERS = {
    "content-type", "content-length", "date", "server", "last-modified", "etag",
    "connection", "keep-alive", "transfer-encoding",
}  # fmt: skip


def same_headers(headers: list[tuple[str, str]]) -> str:
    """Return ``add_header`` lines for the headers Broadcaster sends beyond nginx's own."""
    return "\n".join(
        f"            add_header {name} '{value}';"
        for name, value in headers
        if name.lower() not in OWN_HEADERS
    )


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


def call(base: str, token: str, path: str, body: Mapping[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return dict(json.load(response))


def start_nginx(prefix: Path, name: str, text: str) -> subprocess.Popen[bytes]:
    conf = prefix / f"{name}.conf"
    conf.write_text(text)
    return subprocess.Popen(
        [*pin(SERVER_CPU), "/usr/sbin/nginx", "-p", str(prefix), "-c", str(conf)],
        stderr=subprocess.DEVNULL,
    )


def cache_status(url: str) -> str:
    with urllib.request.urlopen(url) as response:
        return str(response.headers.get("X-Cache"))


def staleness(base: str, token: str, incident: str, proxied: str) -> float:
    """Post an entry and return the seconds until the proxied feed shows it."""
    marker = f"staleness probe {time.time()}"
    call(base, token, f"/api/incidents/{incident}/entries", {"body": marker})
    posted = time.monotonic()
    while marker.encode() not in urllib.request.urlopen(proxied).read():
        if time.monotonic() - posted > 30:
            raise RuntimeError("the proxied feed never showed the new entry")
        time.sleep(0.05)
    return time.monotonic() - posted


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
    parser.add_argument(
        "--nginx-conf",
        type=Path,
        action="append",
        help="a proxy with the feed location of this file; repeat to compare changes in one"
        " run (default: deploy/nginx.conf)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every server this often, alternating"
    )
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
    proxies: list[subprocess.Popen[bytes]] = []
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
            headers = same_headers(response.headers.items())
        (workdir / "www").mkdir()
        (workdir / "www" / "feed.atom").write_bytes(feed)
        nginx = start_nginx(
            workdir, "nginx", NGINX.format(prefix=workdir, port=nginx_port, headers=headers)
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}/feed.atom"
        # the same file with every header Broadcaster sends: what a cache hit answers
        headers_url = f"http://127.0.0.1:{nginx_port}/headers/feed.atom"
        confs = args.nginx_conf or [ROOT / "deploy" / "nginx.conf"]
        proxy_urls = {}
        for index, conf in enumerate(confs):
            name = "proxy" if index == 0 else f"proxy:{conf.stem}"
            prefix = workdir / f"proxy{index}"
            prefix.mkdir()
            port = free_port()
            text = PROXY.format(
                prefix=prefix, port=port, upstream=ours_port, location=deploy_feed_location(conf)
            )
            proxies.append(start_nginx(prefix, "proxy", text))
            proxy_urls[name] = f"http://127.0.0.1:{port}/incidents/{incident['id']}/feed.atom"
        proxy_url = proxy_urls["proxy"]
        wait_for(nginx_url)
        for url in proxy_urls.values():
            wait_for(url)
        cases = [
            ("broadcaster", feed_url),
            *proxy_urls.items(),
            ("nginx", nginx_url),
            ("nginx+headers", headers_url),
        ]
        for _, url in cases:
            wrk(url, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
        # Every server once per round, so that a change in the machine's load
        # between two measurements weighs on each alike; medians are reported.
        rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    name: {"200": wrk(url, args), "304": wrk(url, args, etag_of(url))}
                    for name, url in cases
                }
            )
        results = {
            name: {
                kind: statistics.median(r[name][kind] for r in rounds) for kind in ("200", "304")
            }
            for name, _ in cases
        }
        cache_status(proxy_url)
        hit = cache_status(proxy_url)  # the second of two requests in a row: a cache HIT
        stale = max(staleness(base, token, str(incident["id"]), proxy_url) for _ in range(5))

        def ratio(name: str, kind: str) -> float:
            return round(results[name][kind] / results["nginx"][kind], 3)

        def spread(name: str, kind: str) -> list[float]:
            """Return the min, median and max of the per-round ratio to nginx."""
            found = sorted(r[name][kind] / r["nginx"][kind] for r in rounds)
            return [round(x, 3) for x in (found[0], statistics.median(found), found[-1])]

        report = {
            "feed_bytes": len(feed),
            "results": results,
            "ratio_200": ratio("broadcaster", "200"),
            "ratio_304": ratio("broadcaster", "304"),
            "proxy_ratio_200": ratio("proxy", "200"),
            "proxy_ratio_304": ratio("proxy", "304"),
            # the proxy against nginx sending the same headers as well as the same body
            "proxy_vs_same_headers_200": round(
                results["proxy"]["200"] / results["nginx+headers"]["200"], 3
            ),
            "proxy_vs_same_headers_304": round(
                results["proxy"]["304"] / results["nginx+headers"]["304"], 3
            ),
            "per_round_ratio_min_median_max": {
                name: {kind: spread(name, kind) for kind in ("200", "304")}
                for name, _ in cases
                if name != "nginx"
            },
            "rounds": args.rounds,
            "loadavg": os.getloadavg()[0],
            "proxy_x_cache": hit,
            "proxy_staleness_max_s": round(stale, 2),
            "proxy_confs": {name: str(conf) for name, conf in zip(proxy_urls, confs, strict=True)},
            "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds}s",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        server.terminate()
        server.wait(10)
        for process in (nginx, *proxies):
            if process is not None:
                process.terminate()
                process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
