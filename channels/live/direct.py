"""Write live frames straight to each viewer's socket: the path WebSocket and SSE share.

The hub hands a live message to ``DirectSubscription.write_live``, which
writes the transport's encoding of it, built once per message for every
viewer, with ``transport.write``: no coroutine is woken per viewer and
message, and the publisher never waits. Measured against a coroutine per
viewer in docs/live.md ("Measured capacity") and BENCHMARKS.md.

``every_started`` is the one task per transport that visits every live
viewer once per interval (WebSocket pings, SSE heartbeats), instead of a
timer per connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from .hub import Hub, Message, Subscription


class DirectSubscription(Subscription):
    """A subscription whose live frames are written straight to its socket, by the hub.

    The transport encodes each message once for every viewer (``frame``), and
    ``write_live`` hands those bytes to ``transport.write``, which never waits:
    no coroutine is woken per viewer and message. A client is too slow when
    more than ``limit`` frames sit in user space waiting for its socket (the
    kernel's buffer is already full). Before going live (``started``), and to
    fill a gap or resync afterwards, ``pump`` sends through ``send``, which
    may wait for the socket; after ``started`` that runs in a task of its own,
    made only when needed.
    """

    __slots__ = ("transport", "started", "_unsent", "_offset", "_resume")

    def __init__(self, hub: Hub, incident: str, after: int) -> None:
        super().__init__(hub, incident, after, hub.client_queue)
        self.transport: asyncio.Transport | None = None
        self.started = False
        # Byte offsets (since the socket's buffer was last empty) at which each
        # frame still in user space ends; their number is the client's backlog.
        self._unsent: deque[int] | None = None
        self._offset = 0
        self._resume: asyncio.Task[None] | None = None

    def frame(self, message: Message) -> bytes:
        """Return ``message`` as this transport's bytes, shared by every viewer."""
        raise NotImplementedError

    async def send(self, message: Message) -> None:
        """Send ``message`` through the framework, waiting while the socket is full."""
        raise NotImplementedError

    def write_live(self, message: Message) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.close()
            return True
        data = self.frame(message)
        transport.write(data)
        buffered = transport.get_write_buffer_size()
        if not buffered:
            if self._unsent is not None:
                self._unsent = None
                self._offset = 0
            return True
        unsent = self._unsent
        if unsent is None:
            unsent = self._unsent = deque()
        self._offset += len(data)
        unsent.append(self._offset)
        flushed = self._offset - buffered
        while unsent and unsent[0] <= flushed:
            unsent.popleft()
        return len(unsent) <= self.limit

    def kick(self) -> None:
        super().kick()
        # Only a gap or a resync after going live needs a task of its own; the
        # handler pumps everything before that.
        idle = self._resume is None or self._resume.done()
        if self.started and idle and not self.pumping and not self.closed:
            self._resume = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            await self.pump(self.send, go_live=True)
        except (ConnectionError, RuntimeError):
            self.close()

    def close(self) -> None:
        super().close()
        if self._resume is not None and self._resume is not asyncio.current_task():
            self._resume.cancel()

    async def closed_wait(self) -> None:
        """Wait until the subscription is closed (woken by ``close`` through ``kick``)."""
        while not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


#: Seconds between two slices of a round over every subscription.
ROUND_STEP = 0.25
D = TypeVar("D", bound=DirectSubscription)


async def every_started(
    hub: Hub, kind: type[D], interval: float, visit: Callable[[D], None]
) -> None:
    """Call ``visit`` on every live subscription of ``kind`` once per ``interval``, forever.

    A round is spread over the whole interval in slices of ``ROUND_STEP``
    seconds: writing to 10,000 sockets at once (a ping, say) would bring
    10,000 answers back at once and hold up live frames for a few hundred
    milliseconds. One task does it for every connection, rather than a timer
    per connection.
    """
    clock = asyncio.get_running_loop()
    while True:
        found = [s for s in hub.all() if isinstance(s, kind) and s.started]
        slices = max(1, min(len(found), int(interval / ROUND_STEP)))
        size = -(-len(found) // slices)
        start = clock.time()
        for index in range(slices):
            for subscription in found[index * size : (index + 1) * size]:
                visit(subscription)
            await asyncio.sleep(max(0.0, start + (index + 1) * interval / slices - clock.time()))
