"""Carry committed events to every listener on this node (and, on Redis, others).

A ``Bus`` has two verbs: ``publish(topic, text)`` after a commit, and
``listen()``, an async context manager yielding an async iterator of
``(topic, text)`` for every topic. A bus moves text and never looks inside:
what a message means, and how it is written, is ``broadcaster.bus_message``'s
business, so it is encoded once, by the publisher, whatever the number of
readers. A few listeners per node are the intended use (the hub, the feeds'
heads, the delivery worker), each through ``listen_forever``, so a Redis
backend needs one subscription per node, not one per viewer.

The in-process bus never blocks the publisher: each listener has an unbounded
queue that its owner drains at once (the hub applies the per-client bounds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from .backoff import Backoff
from .bus_message import BusMessage, MalformedMessage, Resubscribed, decode

log = logging.getLogger(__name__)

#: A message as the bus carries it: ``(topic, text)``.
RawMessage = tuple[str, str]
#: Seconds before listening again after a failure: the first wait, the cap.
RELISTEN_FIRST, RELISTEN_CAP = 0.1, 5.0


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def publish(self, topic: str, text: str) -> None: ...

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[RawMessage]]: ...


class LocalListeners:
    """Hand each message to every ``listen()`` block of this process (a base for buses)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[RawMessage]] = set()

    def deliver_locally(self, topic: str, text: str) -> None:
        for queue in self._queues:
            queue.put_nowait((topic, text))

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[RawMessage]]:
        queue: asyncio.Queue[RawMessage] = asyncio.Queue()
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

    async def publish(self, topic: str, text: str) -> None:
        self.deliver_locally(topic, text)


async def _drain(queue: asyncio.Queue[RawMessage]) -> AsyncIterator[RawMessage]:
    while True:
        yield await queue.get()


async def listen_forever(
    bus: Bus,
    handle: Callable[[BusMessage], Awaitable[None]],
    *,
    name: str,
    listening: asyncio.Event | None = None,
) -> None:
    """Hand every message on ``bus``, decoded, to ``handle``, until cancelled.

    A message ``bus_message.decode`` refuses is logged and skipped. When
    listening fails (the stream broke, ``handle`` raised), the loop listens
    again after a backoff and first hands ``handle`` a ``Resubscribed``:
    whatever was published meanwhile was missed, and only the store has it.
    ``listening``, if given, is set while the loop listens. ``name`` says
    who listens, in the log.
    """
    backoff = Backoff(RELISTEN_FIRST, RELISTEN_CAP, jitter=0.5)
    while True:
        try:
            async with bus.listen() as messages:
                if listening is not None:
                    listening.set()
                if backoff.failures:
                    backoff.succeeded()
                    await handle(Resubscribed())
                async for topic, text in messages:
                    try:
                        message = decode(topic, text)
                    except MalformedMessage as exc:
                        log.warning("%s skipped a bus message: %s", name, exc)
                        continue
                    await handle(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s lost the bus; it listens again and re-reads the store", name)
        finally:
            if listening is not None:
                listening.clear()
        await asyncio.sleep(backoff.failed())
