"""Run ``broadcaster serve`` with a chosen live path, so bench/fanout.py can compare them.

Variants of how a live frame reaches a WebSocket client:

- ``direct`` (what ships): the hub writes the frame's bytes, encoded once,
  straight to each socket with ``transport.write``.
- ``task``: the textbook design, for comparison: a bounded ``asyncio.Queue``
  per client filled with ``put_nowait`` and one writer task per client that
  awaits ``ws.send_str``. Same slow-client rule (queue full means 4008).

Usage: ``python bench/serve.py VARIANT serve-arguments...``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

# Import the project (and ``bench``) from the repository root.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from broadcaster import cli  # noqa: E402
from channels import websocket  # noqa: E402
from channels.hub import Message  # noqa: E402


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


if __name__ == "__main__":
    variant, *rest = sys.argv[1:]
    if variant == "task":
        websocket.WebSocketSubscription = TaskSubscription  # type: ignore[misc]
    elif variant != "direct":
        raise SystemExit(f"unknown variant {variant!r}")
    sys.exit(cli.main(["serve", *rest]))
