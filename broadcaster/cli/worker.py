"""Run ``broadcaster worker``: the delivery worker (SMS and webhooks) without the HTTP service.

It builds the same application as ``serve``, so every channel registers its
tables and senders the same way, forces ``worker`` on, and starts it with no
listener until SIGTERM or SIGINT. The core does not know where the worker
loop lives: a channel (``channels.delivery.worker``) registers it as a background task
of the application, loaded by name like every built-in channel.

Pair it with ``BROADCASTER_WORKER=0 broadcaster serve``; running both with
workers is safe too, and so is a worker on every node of a PostgreSQL site:
every claim is a lease in the shared database that no other claim can take
(``broadcaster.store.outbox``), and the bus wakes the workers of every node
when any node queues deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from aiohttp import web

from .args import settings_from


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("worker", help="run the delivery worker only (SMS, webhooks)")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--public-url", dest="public_url")
    parser.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from ..app import create_app
    settings = settings_from(args).with_(worker=True)
    app = create_app(settings)
    print(f"Broadcaster delivery worker (data in {settings.data_dir})", flush=True)
    asyncio.run(run(app))
    return 0


async def run(app: web.Application) -> None:
    """Start ``app``'s background tasks without serving HTTP; stop on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
