"""Carry committed events to every listener on this node (and, on Redis, others).

A ``Bus`` has two verbs: ``publish(topic, message)`` after a commit, and
``listen()``, an async context manager yielding an async iterator of
``(topic, message)`` for every topic. One listener per node is the intended
use (the hub), so a Redis backend needs one subscription per node, not one per
viewer. Messages are already-serialised text: they are encoded once, by the
publisher, whatever the number of readers.

The in-process bus never blocks the publisher: each listener has an unbounded
queue that its owner drains at once (the hub applies the per-client bounds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

Message = tuple[str, str]
#: The topic on which a bus that reconnected by itself says that messages may
#: have been lost meanwhile: every live subscription then re-reads the store.
RESUBSCRIBED = "bus:resubscribed"


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def publish(self, topic: str, message: str) -> None: ...

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Message]]: ...


class LocalListeners:
    """Hand each message to every ``listen()`` block of this process (a base for buses)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Message]] = set()

    def deliver_locally(self, topic: str, message: str) -> None:
        for queue in self._queues:
            queue.put_nowait((topic, message))

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Message]]:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield _drain(queue)
        finally:
            self._queues.discard(queue)


class MemoryBus(LocalListeners):
    """Deliver within one process."""

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        self._queues.clear()

    async def ping(self) -> bool:
        return True

    async def publish(self, topic: str, message: str) -> None:
        self.deliver_locally(topic, message)


async def _drain(queue: asyncio.Queue[Message]) -> AsyncIterator[Message]:
    while True:
        yield await queue.get()
