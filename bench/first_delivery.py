"""Measure how long an entry takes from the POST to a live viewer, and the server's CPU per post.

One ``broadcaster serve`` on a fresh data directory (``bench/serve.py``, the
shipped live path), one WebSocket viewer, and POSTs one at a time
``--spacing`` seconds apart: for each, the time from just before the POST
to the viewer's receipt of the entry, and to the 201. The server's CPU
(all threads, from ``/proc``) over the posts, divided by their number, is
the whole cost of one post with one viewer. This is the head start nchan
gets in ``bench/fanout.py``: it publishes from memory, while an entry here
is checked, signed, chained and fsynced before it is published.

Usage: ``.venv/bin/python bench/first_delivery.py [--posts 300] [--spacing 0.02]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
# Import the project (and ``bench``) from the repository root.
sys.path[0] = str(ROOT)

from bench.append import ranked  # noqa: E402
from bench.fanout import Broadcaster, cpu_seconds, free_port  # noqa: E402

WARMUP = 20


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args()
    server = Broadcaster(free_port(), False, "direct")
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        headers = {"Authorization": f"Bearer {server.token}"}
        url = f"{server.base}/api/incidents/{server.incident}/entries"
        received: list[float] = []
        answered: list[float] = []
        try:
            async with session.ws_connect(f"{server.base}/ws/incidents/{server.incident}") as ws:
                cpu_before = 0.0
                for number in range(WARMUP + args.posts):
                    if number == WARMUP:
                        cpu_before = cpu_seconds(server.pids())
                    body = f"first delivery n={number}"
                    sent = time.perf_counter()
                    post = asyncio.ensure_future(
                        session.post(url, json={"body": body}, headers=headers)
                    )
                    while body not in (await ws.receive_str()):
                        pass
                    got = time.perf_counter() - sent
                    response = await post
                    if response.status != 201:
                        raise RuntimeError(f"POST answered {response.status}")
                    await response.release()
                    if number >= WARMUP:
                        received.append(got)
                        answered.append(time.perf_counter() - sent)
                    await asyncio.sleep(args.spacing)
                cpu = cpu_seconds(server.pids()) - cpu_before
        finally:
            await server.stop()
    received.sort()
    answered.sort()

    def ms(values: list[float], p: float) -> str:
        return f"{ranked(values, p) * 1000:.2f}"

    print(
        f"{args.posts} posts, one viewer: to the viewer p50 {ms(received, 0.5)} ms,"
        f" p90 {ms(received, 0.9)} ms; the 201 p50 {ms(answered, 0.5)} ms;"
        f" server CPU {cpu / args.posts * 1000:.2f} ms per post (idle time included)"
    )


if __name__ == "__main__":
    asyncio.run(main())
