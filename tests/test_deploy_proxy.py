"""``deploy/nginx.conf`` in front of two nodes (PostgreSQL, Redis): live, feeds, readiness.

The example file is used as shipped, with only what a deployment changes
replaced: the upstream addresses (two nodes on loopback ports), the listen
address, the cache directory, and paths nginx must be able to write to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, make_token
from serve_process import free_port
from test_sse import entry_events, read_event
from test_websocket import entry_seqs

from broadcaster.app import create_app
from broadcaster.log.signing import b64url
from broadcaster.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; CI must run the deployment test")
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    return path


def local_config(prefix: Path, port: int, upstreams: list[int]) -> str:
    """Return the example with the deployment-specific lines pointed at this test."""
    text = EXAMPLE.read_text()
    servers = "".join(
        f"        server 127.0.0.1:{p} max_fails=2 fail_timeout=10s;\n" for p in upstreams
    )
    text, count = re.subn(r"(?m)^        server 10\.0\.0\.\d+:8080[^\n]*\n", "", text)
    assert count == 3, "the example's upstream block changed"
    text = text.replace("        keepalive 64;", servers + "        keepalive 64;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("/var/cache/nginx/broadcaster", str(prefix / "cache"))
    paths = "".join(
        f"    {name}_temp_path {prefix / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n    access_log off;\n" + paths, 1)
    head = "user root;\n" if os.geteuid() == 0 else ""
    return head + f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\n" + text


@pytest.fixture
def key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return b64url(Ed25519PrivateKey.generate().private_bytes_raw())


@pytest.fixture
async def two_nodes(
    tmp_path: Path, database_url: str, redis_url: str, key: str
) -> AsyncIterator[list[TestClient]]:
    clients = []
    try:
        for name in "ab":
            settings = Settings.from_env(
                {}, data_dir=tmp_path / name, public_url="http://x.test",
                database_url=database_url, redis_url=redis_url, signing_key=key,
            )  # fmt: skip
            client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
            await client.start_server()
            clients.append(client)
        yield clients
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def proxy(tmp_path: Path, two_nodes: list[TestClient]) -> Iterator[str]:
    """nginx with the example configuration, in front of the two nodes; yields its base URL."""
    with running_proxy(tmp_path, [c.port for c in two_nodes]) as base:  # type: ignore[misc]
        yield base


@contextlib.contextmanager
def running_proxy(tmp_path: Path, upstreams: list[int]) -> Iterator[str]:
    """Run nginx with the shipped configuration in front of ``upstreams``; yield its base URL."""
    binary = nginx_binary()
    prefix = tmp_path / "nginx"
    (prefix / "cache").mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(local_config(prefix, port, upstreams))
    checked = subprocess.run(
        [binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


async def test_the_example_proxy_serves_live_updates_and_caches_feeds(
    proxy: str, two_nodes: list[TestClient]
) -> None:
    """Through nginx: WebSocket and SSE get every entry at once; a feed comes from the cache."""
    a, _ = two_nodes
    editor = bearer(await make_token(a, "editor"))
    async with aiohttp.ClientSession(base_url=proxy) as http:
        for _ in range(int(TIMEOUT / 0.05)):  # nginx has no readiness signal but its port
            try:
                async with http.get("/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        body = {"title": "代理测试", "severity": "severe"}
        async with http.post("/api/incidents", json=body, headers=editor) as response:
            assert response.status == 201, await response.text()
            incident = (await response.json())["id"]
        ws = await http.ws_connect(f"/ws/incidents/{incident}?after=0")
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "hello"
        sse = await http.get(f"/api/incidents/{incident}/events?after=0")
        await read_event(sse)  # retry:
        for n in range(3):
            path = f"/api/incidents/{incident}/entries"
            async with http.post(path, json={"body": f"第{n}条"}, headers=editor) as response:
                assert response.status == 201
            # Each entry arrives before the next is posted: nothing sits in a buffer.
            assert await entry_seqs(ws, n + 1) == [n + 1]
            assert await entry_events(sse, n + 1) == [n + 1]
        await ws.close()
        sse.close()
        feed = f"/incidents/{incident}/feed.atom"
        caches = []
        for _ in range(2):
            async with http.get(feed) as response:
                assert response.status == 200
                caches.append(response.headers.get("X-Cache"))
        assert caches == ["MISS", "HIT"]
