"""Follow the shared log from the event loop: the tailer, waits for a position, ``sync``.

A tailer task blocks in ``XREAD`` after the replica's position and, when
entries arrive, queues a ``CATCH_UP`` job carrying them to the writer thread
(which applies them between local groups) and waits for it, so it never
floods the queue. Redis unreachable: it retries with jittered backoff from
0.05 s to 2 s; the stream keeps everything, so nothing is missed meanwhile.

``wait_applied(position)`` resolves once the replica holds the write at
``position`` (the id of its log entry); ``sync()`` waits for the log's
current head, for requests that must see every write acknowledged anywhere
before they started. Listeners (the delivery worker's wake-up) are called
after entries from other nodes were applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from .wal import HEAD, ORIGIN, STREAM, LogEntry, Position, entries_of, parse, text

log = logging.getLogger(__name__)

#: Milliseconds one XREAD of the tailer blocks before it asks again.
TAIL_BLOCK_MS = 5000
TAIL_BATCH = 256
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
#: Seconds ``sync`` waits at most; past that, the request goes on with what the replica has.
SYNC_WAIT = 2.0
#: Seconds ``sync`` lets the tailer bring the head before asking the writer itself.
SYNC_NUDGE = 0.05

Submit = Callable[[tuple[Callable[..., Any], "Future[Any]"]], None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def CATCH_UP(conn: Any) -> None:  # noqa: N802 - a sentinel job, compared by identity
    """Mark a queued job that only applies the log (queued by the tailer and ``sync``)."""


class Follower:
    """Hold the replica's position as the event loop sees it, and move it forward."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.applied: Position = (0, 0)
        #: Called in the event loop after entries from other nodes were applied.
        self.listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[Position, asyncio.Future[None]]] = []
        self._submit: Submit | None = None
        self._client: AsyncRedis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Group ids this node appended lately (written by the writer thread).
        self.own: dict[str, None] = {}

    def notify(self, position: str, *, remote: bool) -> None:
        """Record that the replica committed ``position``; safe from any thread."""
        reached = parse(position)
        loop = self._loop
        if loop is None:
            self.applied = max(self.applied, reached)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            loop.call_soon_threadsafe(self._advance, reached, remote)

    def _advance(self, reached: Position, remote: bool) -> None:
        if reached > self.applied:
            self.applied = reached
        if self._waiters:
            waiting = []
            for target, future in self._waiters:
                if target <= self.applied:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((target, future))
            self._waiters = waiting
        if remote:
            for listener in tuple(self.listeners):
                try:
                    listener()
                except Exception:
                    log.exception("a replication listener failed")

    async def start(self, submit: Submit) -> None:
        """Start tailing the log; ``submit`` queues a job on the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._submit = submit
        self._closing = False
        self._client = AsyncRedis.from_url(
            self.url, socket_timeout=TAIL_BLOCK_MS / 1000 + 5, socket_connect_timeout=5
        )
        self._task = asyncio.create_task(self._tail(), name="wal-tailer")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            # redis-py can swallow a cancellation that lands inside a blocking
            # read; dropping the connections ends the read for sure.
            self._task.cancel()
            _, pending = await asyncio.wait({self._task}, timeout=0.2)
            if pending and self._client is not None:
                await self._client.connection_pool.disconnect()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for _, future in self._waiters:
            future.cancel()
        self._waiters = []

    async def wait_applied(self, position: str, within: float) -> bool:
        """Wait until the replica holds ``position``; ``False`` after ``within`` seconds."""
        target = parse(position)
        if target <= self.applied:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        try:
            await asyncio.wait_for(future, within)
        except TimeoutError:
            return False
        finally:
            self._waiters = [(t, f) for t, f in self._waiters if f is not future]
        return True

    async def sync(self, within: float = SYNC_WAIT) -> bool:
        """Wait until the replica holds every write in the log now; ``False`` if it cannot."""
        if self._client is None:
            return False
        try:
            async with asyncio.timeout(within):
                head = (await self._client.get(HEAD)) or ORIGIN
                # Usually the tailer or a local group is about to commit it.
                if await self.wait_applied(_text(head), SYNC_NUDGE):
                    return True
                while self.applied < parse(head):
                    await self.catch_up(None)
                    await asyncio.sleep(0)  # let the writer's notice land
        except Exception:  # Redis or the replica is down: serve what the replica has
            log.debug("sync with the log failed", exc_info=True)
            return False
        return True

    async def catch_up(self, hint: tuple[str, list[LogEntry]] | None) -> None:
        """Have the writer thread apply the next entries (``hint`` saves it a read)."""
        if self._submit is None:
            raise RuntimeError("the replica is not open")
        future: Future[Any] = Future()
        future.hint = hint  # type: ignore[attr-defined]  # read by Replication.run_group
        self._submit((CATCH_UP, future))
        await asyncio.wrap_future(future)

    async def _tail(self) -> None:
        client = self._client
        if client is None:
            return
        delay = BACKOFF_MIN
        while not self._closing:
            try:
                after = text(self.applied)
                reply = await client.xread({STREAM: after}, count=TAIL_BATCH, block=TAIL_BLOCK_MS)
                entries = entries_of(reply)
                # This node's own entries are in its replica once their group
                # commits: only others' entries need the writer's time.
                if entries and (
                    any(e.group not in self.own for e in entries)
                    or not await self.wait_applied(entries[-1].id, SYNC_WAIT)
                ):
                    await self.catch_up((after, entries))
                delay = BACKOFF_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away or the replica failing: retry later
                if self._closing:
                    return
                log.warning("following the log failed (%s); retry in %.2f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_MAX)
