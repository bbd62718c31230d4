"""Restart the server under 2,000 live WebSocket clients: all resume, without a gap.

A real ``broadcaster serve`` process serves ``FOLLOWERS`` lean clients
(``faults.clients``). It is killed with SIGKILL and started again on the same
port and data directory; every client reconnects at once with ``after=`` its
last seq while entries keep being posted and the API is read. Each client
must end with exactly seqs 1..N, and the API must answer meanwhile.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from conftest import TIMEOUT
from serve_process import ServeProcess

from faults.clients import Follower, gapless

pytestmark = pytest.mark.slow

FOLLOWERS = 2000
BEFORE = 5  # entries posted before the restart
AFTER = 10  # entries posted while the clients reconnect
#: Every follower connects from 127.0.0.1, as the phones behind one carrier NAT
#: do: the per-client cap is raised to let them all in.
SERVER_ENV = {"BROADCASTER_MAX_LIVE_PER_CLIENT": str(FOLLOWERS * 2)}


def raise_file_limit(need: int) -> None:
    """Let this process and the server it starts hold ``need`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


async def until(predicate: Callable[[], bool], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
async def test_two_thousand_clients_resume_without_gaps_after_a_restart(
    tmp_path: Path, signal: str
) -> None:
    """Kill or stop under 2,000 followers, restart: each gets 1..N once; GETs answer meanwhile."""
    raise_file_limit(FOLLOWERS * 2 + 512)
    data = tmp_path / "data"
    server = await asyncio.to_thread(ServeProcess(data, env=SERVER_ENV).start, TIMEOUT * 3)
    (token,) = server.tokens()
    headers = {"Authorization": f"Bearer {token}"}
    followers: list[Follower] = []
    tasks: list[asyncio.Task[None]] = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    try:
        async with (
            asyncio.timeout(TIMEOUT * 12),
            aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
        ):

            async def post(n: int) -> None:
                url = f"{server.base}/api/incidents/{incident}/entries"
                async with session.post(url, json={"body": f"第{n}次通报"}) as response:
                    assert response.status == 201, await response.text()

            body = {"title": "风暴测试", "severity": "severe"}
            async with session.post(f"{server.base}/api/incidents", json=body) as response:
                incident = (await response.json())["id"]
            for n in range(1, BEFORE + 1):
                await post(n)

            gate = asyncio.Semaphore(256)
            followers = [Follower(server.port, incident) for _ in range(FOLLOWERS)]
            tasks = [asyncio.create_task(f.run(gate)) for f in followers]
            await until(
                lambda: all(f.last == BEFORE for f in followers), "the backlog", TIMEOUT * 4
            )

            if signal == "SIGKILL":
                server.kill()
            else:
                await asyncio.to_thread(server.stop)  # SIGTERM: clients are told 1001
            restarted = time.monotonic()
            server = await asyncio.to_thread(
                ServeProcess(data, port=server.port, env=SERVER_ENV).start, TIMEOUT * 3
            )
            latencies: list[float] = []

            async def read_api() -> None:
                url = f"{server.base}/api/incidents/{incident}"
                while not all(f.last == BEFORE + AFTER for f in followers):
                    started = time.monotonic()
                    async with session.get(url) as response:
                        assert response.status == 200
                        await response.read()
                    latencies.append(time.monotonic() - started)
                    await asyncio.sleep(0.05)  # a reader's pace, sampled all through the storm

            reader = asyncio.create_task(read_api())
            for n in range(BEFORE + 1, BEFORE + AFTER + 1):
                await post(n)
            head = BEFORE + AFTER
            await until(lambda: all(f.last == head for f in followers), "resumption", TIMEOUT * 6)
            resumed = time.monotonic() - restarted
            await reader
    finally:
        for follower in followers:
            follower.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()

    broken = [f for f in followers if not gapless(f, head)]
    assert not broken, f"{len(broken)} clients got {list(broken[0].seqs)}"
    assert all(f.connects >= 2 for f in followers), "some client never reconnected"
    if signal == "SIGTERM":
        assert all(f.close_codes[:1] == [1001] for f in followers), "not told 'going away'"
    assert latencies and max(latencies) < TIMEOUT
    print(
        f"\n{FOLLOWERS} clients resumed in {resumed:.1f} s after {signal};"
        f" GET during the storm: median {statistics.median(latencies) * 1000:.0f} ms,"
        f" max {max(latencies) * 1000:.0f} ms over {len(latencies)} requests"
    )
