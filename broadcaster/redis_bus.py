"""Carry bus messages between nodes over Redis pub/sub, with one subscription per node.

Each node holds one pub/sub connection with one ``PSUBSCRIBE prefix*``; every
``listen()`` in the process gets its own unbounded queue fed from that single
subscription (the hub drains it at once and applies the per-client bounds), so
Redis sees one subscriber per node whatever the number of viewers. Topics map
to channels ``prefix + topic``.

Failure modes, plainly:

- Redis down or restarting: the reader task reconnects with jittered
  exponential backoff (0.05 s doubling to 2 s). Meanwhile ``ping()`` is False
  (``/readyz`` reports degraded) and ``publish()`` raises; the publisher logs
  that, since the entry is already durable in the store.
- Messages published while this node was not subscribed are not replayed:
  Redis pub/sub keeps nothing. Viewers on this node notice the gap from the
  next entry's ``seq`` (or on reconnecting) and resume from the log.
- A silent connection (network partition, frozen server) is detected by a
  heartbeat: the reader PINGs every ``heartbeat`` seconds and drops the
  connection when nothing at all came back for twice that long.
- Publishes from one node are serialised on a lock: the client's pool would
  otherwise send concurrent publishes on different sockets, and Redis could
  deliver them out of call order. That caps one node at one publish per round
  trip (thousands a second on a LAN), far above any press office's rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .backoff import Backoff
from .bus import LocalListeners
from .bus_message import Resubscribed, encode
from .text import decode_bytes

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
PING_TIMEOUT = 2.0


class RedisBus(LocalListeners):
    """Publish to and listen on Redis channels named ``prefix + topic``.

    ``client`` is for tests and special setups (Sentinel, TLS options): the
    bus then uses it as given and leaves it open on ``close()``. A client the
    bus builds from ``url`` retries a command once (a pooled socket may be
    stale after a Redis restart) and times out after 5 s, so a publish never
    hangs a request for long.
    """

    def __init__(
        self,
        url: str,
        *,
        client: Redis | None = None,
        prefix: str = "broadcaster:",
        heartbeat: float = 15.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._owns_client = client is None
        self._client = client or Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 1),
            socket_connect_timeout=connect_timeout,
            socket_timeout=5.0,
            socket_keepalive=True,
        )
        self.prefix = prefix
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        super().__init__()
        self._live = asyncio.Event()
        self._publishing = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._subscribed_before = False

    @property
    def subscribed(self) -> bool:
        """Tell whether this node's subscription is confirmed and heard from lately."""
        return self._live.is_set()

    async def connect(self) -> None:
        """Start the reader; wait up to ``connect_timeout`` for the subscription.

        When Redis is unreachable the node still starts, degraded, and keeps
        retrying: a web node booting during a Redis restart should come up, not
        crash-loop.
        """
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")
        try:
            await asyncio.wait_for(self._live.wait(), self._connect_timeout)
        except TimeoutError:
            log.warning("Redis bus not subscribed after %.1f s; retrying", self._connect_timeout)

    async def close(self) -> None:
        # The flag as well as cancel(): a cancellation that lands as a read
        # times out can be swallowed inside redis-py, and the reader must
        # still stop.
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._live.clear()
        self._queues.clear()
        if self._owns_client:
            await self._client.aclose()

    async def ping(self) -> bool:
        """Tell whether both the subscription and the command connection work."""
        if not self._live.is_set():
            return False
        try:
            return bool(await asyncio.wait_for(self._client.ping(), PING_TIMEOUT))
        except Exception:  # any failure means "not ready"; readyz shows it
            return False

    async def publish(self, topic: str, text: str) -> None:
        """Publish ``text``; raise the client's error when Redis cannot take it.

        While this node is not subscribed (Redis down), the message goes to this
        node's listeners directly, so its own viewers stay sub-second; other
        nodes' viewers get it from the store (``channels.catchup``).
        """
        if not self._live.is_set():
            self.deliver_locally(topic, text)
            raise ConnectionError("the Redis bus is not connected; delivered on this node only")
        async with self._publishing:
            try:
                await self._client.publish(self.prefix + topic, text)
            except Exception:
                self.deliver_locally(topic, text)
                raise

    async def _read_forever(self) -> None:
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX, jitter=0.5)
        while not self._closing:
            try:
                await self._read_subscription()
            except Exception as exc:  # whatever broke, the cure is a fresh subscription
                if self._live.is_set():
                    log.warning("Redis bus subscription lost (%s); reconnecting", exc)
                    backoff.succeeded()
                else:
                    log.debug("Redis bus cannot subscribe (%s); retrying", exc)
            self._live.clear()
            if self._closing:
                return
            await asyncio.sleep(backoff.failed())

    async def _read_subscription(self) -> None:
        pubsub: PubSub = self._client.pubsub()
        loop = asyncio.get_running_loop()
        try:
            await pubsub.psubscribe(self.prefix + "*")
            heard = pinged = loop.time()
            while not self._closing:
                message = await pubsub.get_message(timeout=self._heartbeat / 2)
                now = loop.time()
                if message is not None:
                    heard = now
                    self._handle(message)
                elif now - heard > 2 * self._heartbeat:
                    raise ConnectionError(f"no answer from Redis for {now - heard:.1f} s")
                if now - pinged >= self._heartbeat:
                    await pubsub.ping()
                    pinged = now
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "psubscribe":
            if not self._live.is_set():
                log.info("Redis bus subscribed to %s*", self.prefix)
            self._live.set()
            if self._subscribed_before:  # messages may have been lost meanwhile
                log.info("Redis bus subscribed again; live clients resync")
                self.deliver_locally(*encode(Resubscribed()))
            self._subscribed_before = True
        elif kind == "pmessage":
            try:
                channel = decode_bytes(message["channel"], errors="strict")
                data = decode_bytes(message["data"], errors="strict")
            except UnicodeDecodeError:  # not ours: our publishers only send UTF-8
                log.warning("Redis bus skipped a message that is not UTF-8")
                return
            self.deliver_locally(channel[len(self.prefix) :], data)
