"""Run ``broadcaster serve`` with a chosen live path, so bench/fanout.py can compare them.

Variants of how a live frame reaches a WebSocket client:

- ``direct`` (what ships): the hub writes the frame's bytes, encoded once,
  straight to each socket with ``transport.write``.
- ``task``: the textbook design, for comparison: a bounded ``asyncio.Queue``
  per client filled with ``put_nowait`` and one writer task per client that
  awaits ``ws.send_str``. Same slow-client rule (queue full means 4008).
- ``freeze-once``: the shipped live path, but the garbage collector as it was
  before ``broadcaster.gc_pauses``: ``gc.freeze()`` once at start, survivors
  of full collections never frozen.

With ``BENCH_PAUSES=FILE`` in the environment, the server also records its
pauses and writes them to ``FILE`` as JSON when it stops: every garbage
collection (wall-clock start, seconds, generation) from ``gc.callbacks``, and
every event-loop stall over ``STALL`` seconds (wall-clock start, seconds,
and the CPU seconds the loop's thread used meanwhile), seen by a task that
asks to wake every ``TICK`` seconds and notes how late it woke. A stall whose
CPU time is far below its length was the thread waiting (for a core shared
with the clients, or for the GIL), not working. bench/fanout.py keeps those
inside its measured window.

Usage: ``python bench/serve.py VARIANT serve-arguments...``
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

# Import the project (and ``bench``) from the repository root.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from broadcaster import app as app_module  # noqa: E402
from broadcaster import cli  # noqa: E402
from broadcaster.cli import serve as serve_command  # noqa: E402
from channels.live import websocket  # noqa: E402
from channels.live.hub import Message  # noqa: E402


class TaskSubscription(websocket.WebSocketSubscription):
    """A bounded queue per client, drained by a writer task per client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: asyncio.Queue[Message] = asyncio.Queue(self.limit)
        self.writer = asyncio.ensure_future(self.write_loop())

    async def write_loop(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self.ws.send_str(message.frame)
            except ConnectionError:
                return

    def write_live(self, message: Message) -> bool:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        super().close()
        self.writer.cancel()


class FreezeOnce:
    """Stand-in for ``gc_pauses.FrozenSurvivors``: freeze what exists at start, nothing after."""

    def install(self) -> None:
        gc.freeze()


TICK = 0.005
STALL = 0.005


class Pauses:
    """Record garbage collections and event-loop stalls, with wall-clock start times."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gc: list[tuple[float, float, int]] = []
        #: (start, seconds, the loop thread's CPU seconds, its seconds waiting for
        #: a core, the whole process's CPU seconds): what a stall was made of.
        self.stalls: list[tuple[float, float, float, float, float]] = []
        self._gc_start = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            seconds = time.perf_counter() - self._gc_start
            self.gc.append((time.time() - seconds, seconds, info["generation"]))

    async def watch(self, app: web.Application) -> AsyncIterator[None]:
        schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")

        def waited() -> float:
            """Seconds this thread has spent runnable but waiting for a core."""
            return int(schedstat.read_text().split()[1]) / 1e9

        async def loop() -> None:
            clock = asyncio.get_running_loop()
            while True:
                before, cpu, queued = clock.time(), time.thread_time(), waited()
                process = time.process_time()
                await asyncio.sleep(TICK)
                late = clock.time() - before - TICK
                if late > STALL:
                    self.stalls.append(
                        (
                            time.time() - late,
                            late,
                            time.thread_time() - cpu,
                            waited() - queued,
                            time.process_time() - process,
                        )
                    )

        task = asyncio.ensure_future(loop())
        yield
        task.cancel()
        with open(self.path, "w") as out:  # noqa: ASYNC230 - once, at shutdown
            json.dump({"gc": self.gc, "stalls": self.stalls}, out)


def record_pauses(path: str) -> None:
    pauses = Pauses(path)
    gc.callbacks.append(pauses.on_gc)
    create_app = app_module.create_app

    def create_watched_app(*args: Any, **kwargs: Any) -> web.Application:
        app = create_app(*args, **kwargs)
        app.cleanup_ctx.append(pauses.watch)
        return app

    app_module.create_app = create_watched_app


if __name__ == "__main__":
    if os.environ.get("BENCH_PAUSES"):
        record_pauses(os.environ["BENCH_PAUSES"])
    variant, *rest = sys.argv[1:]
    if variant == "task":
        websocket.WebSocketSubscription = TaskSubscription  # type: ignore[misc]
    elif variant == "freeze-once":
        serve_command.FrozenSurvivors = FreezeOnce  # type: ignore[assignment,misc]
    elif variant != "direct":
        raise SystemExit(f"unknown variant {variant!r}")
    sys.exit(cli.main(["serve", *rest]))
