"""Fan committed entries out to this node's live connections, in order, never waiting.

One task per node listens on the bus (``broadcaster.bus.listen_forever``) and
hands each message to the local subscriptions of its incident. The publisher
serialised the frame once; the hub decodes each message once
(``broadcaster.bus.message``) and every subscription gets the same object,
whose transport encodings (a WebSocket frame, an SSE event as an HTTP chunk)
are also built once and shared. Live viewers of either transport
(``channels.live.direct``) get those bytes written to their socket by the hub
itself, with no coroutine woken per viewer; the hub serves them in slices, so
one message to 10,000 viewers does not hold the event loop for its whole
fan-out.

There's no backpressure. The hub never awaits a client: it calls
``Subscription.deliver``, which either hands the frame to the socket at once or
appends it to a queue bounded by ``settings.client_queue``. A client that falls
``client_queue`` frames behind is cut off (WebSocket close code 4008, SSE
stream ended with a ``: too slow`` comment) and counted in ``broadcaster_slow_clients_closed``; the
publisher and the other clients never wait for it. The timeline is the source
of truth, so the client loses nothing: it reconnects with ``after=`` (or
``Last-Event-ID``) and catches up from the store. The trade-off is that a
client on a poor link may be cut off during a burst and must reconnect.

Ordering: a subscription starts buffering before it reads its backlog, reads
the backlog from the store in pages (a 100k-entry incident is never loaded at
once), then drains its buffer skipping seqs it already sent. A seq that jumps
past ``last + 1`` (messages reordered or lost between nodes, a bus that
reconnected) is filled from the store before anything later is sent, so each
client sees every seq after ``after`` exactly once, in order.

``broadcaster_fanout_latency_seconds`` is observed once per message and node:
from the publish time stamped on the bus to the hand-off to the last local
subscription, the worst case on this node, at constant cost per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

from aiohttp import web

from broadcaster.appkeys import BUS, METRICS, SETTINGS, STORE
from broadcaster.background import background
from broadcaster.bus import Bus, listen_forever
from broadcaster.bus.message import BusMessage, EntryMessage, Resubscribed, entry_frame, entry_json
from broadcaster.metrics import Metrics
from broadcaster.store.contract import Store
from broadcaster.timeline.model import Entry

#: Entries read from the store per backlog page.
PAGE = 200
#: Seconds a closed slow client may take to read what was already written.
CLOSE_GRACE = 10.0
#: Seconds the shutdown waits for clients to take their close frames.
GOING_AWAY_WAIT = 5.0
#: Seconds the app waits at start for the bus listener before serving anyway.
LISTEN_WAIT = 5.0
#: Seconds of one message's fan-out before the loop runs the work that came
#: due meanwhile (about 500 viewers' socket writes).
SLICE_SECONDS = 0.004
#: Viewers served between two looks at the clock.
CLOCK_EVERY = 64


class Message:
    """One entry frame, shared by every subscription; encodings are built once.

    The fields are those of ``bus_message.EntryMessage``, copied into slots
    the fan-out reads thousands of times, next to the cache of encodings.
    """

    __slots__ = ("incident", "seq", "frame", "published", "_encoded")

    def __init__(self, incident: str, seq: int, frame: str, published: float) -> None:
        self.incident = incident
        self.seq = seq
        self.frame = frame
        self.published = published
        self._encoded: dict[str, bytes] = {}

    @classmethod
    def from_entry(cls, entry: Entry) -> Message:
        return cls(entry.incident, entry.seq, entry_frame(entry), 0.0)

    @classmethod
    def from_bus(cls, message: EntryMessage) -> Message:
        return cls(message.incident, message.seq, message.frame, message.published)

    @property
    def entry_json(self) -> str:
        """Return the entry alone (the frame minus its envelope)."""
        return entry_json(self.frame)

    def encoded(self, key: str, encode: Callable[[Message], bytes]) -> bytes:
        """Return ``encode(self)``, computed once per message whatever the readers."""
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = encode(self)
        return data


Send = Callable[[Message], Awaitable[None]]


class Subscription:
    """Follow one incident for one client: backlog, then live, gap-free.

    The hub calls ``deliver`` (never blocking). The owner calls ``pump`` to
    send what the store and the buffer hold; transports that can write
    without awaiting override ``write_live`` and are switched to ``live``
    mode, where frames go straight to the socket. ``on_drop`` and ``kick`` are
    the transport's hooks for being cut off and for having work to do.
    """

    # Slots and a buffer made only when needed: an idle connection costs
    # memory in every one of thousands of subscriptions.
    __slots__ = (
        "hub", "incident", "last", "limit", "pending", "live", "stale", "closed",
        "dropped", "pumping", "_waiter",
    )  # fmt: skip

    def __init__(self, hub: Hub, incident: str, after: int, limit: int) -> None:
        self.hub = hub
        self.incident = incident
        self.last = after
        self.limit = limit
        self.pending: deque[Message] | None = None
        self.live = False
        self.stale = True  # the store may hold entries not yet sent
        self.closed = False
        self.dropped = False
        self.pumping = False
        self._waiter: asyncio.Future[None] | None = None

    # -- called by the hub -------------------------------------------------
    def deliver(self, message: Message) -> None:
        """Take one message without waiting: write it, buffer it, or drop the client."""
        if self.closed or message.seq <= self.last:
            return
        if self.live:
            if message.seq == self.last + 1:
                self.last = message.seq
                if not self.write_live(message):
                    self.drop()
                return
            self.live = False  # a gap: the owner fills it from the store first
        pending = self.pending
        if pending is None:
            pending = self.pending = deque()
        elif len(pending) >= self.limit:
            self.drop()
            return
        pending.append(message)
        self.kick()

    def resync(self) -> None:
        """Re-read the store: the bus may have lost messages while it reconnected."""
        if not self.closed:
            self.stale = True
            self.live = False
            self.kick()

    # -- transport hooks ---------------------------------------------------
    def write_live(self, message: Message) -> bool:
        """Hand ``message`` to the socket now; ``False`` if the client is too far behind."""
        raise NotImplementedError

    def kick(self) -> None:
        """Tell the owner there is something to send (default: wake ``wait``)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def on_drop(self) -> None:
        """Cut the slow client off (the transport decides how)."""

    async def going_away(self) -> None:
        """End the stream because the server is shutting down."""
        self.close()

    # -- called by the owner -------------------------------------------------
    def drop(self, *, slow: bool = True) -> None:
        """Stop serving a client that fell behind; it resumes from the store."""
        if self.closed:
            return
        self.dropped = True
        if slow:
            self.hub.metrics.slow_clients.inc()
        self.close()
        self.on_drop()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.live = False
            self.pending = None
            self.hub.unsubscribe(self)
            self.kick()

    async def wait(self) -> None:
        """Wait until there is something to send or the subscription is closed."""
        if self.pending or self.stale or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def pump(self, send: Send, *, go_live: bool = False) -> None:
        """Send every known entry after ``last`` in order; with ``go_live``, end in live mode."""
        self.pumping = True
        try:
            while not self.closed:
                if self.stale:
                    self.stale = False
                    await self._backfill(send, None)
                elif self.pending:
                    message = self.pending[0]
                    if message.seq <= self.last:
                        self.pending.popleft()
                    elif message.seq == self.last + 1:
                        self.pending.popleft()
                        self.last = message.seq
                        await send(message)
                    else:
                        before = self.last
                        await self._backfill(send, message.seq - 1)
                        if self.last == before:  # the store lags the bus: let the client resync
                            self.drop(slow=False)
                else:
                    # No await since the buffer was seen empty: nothing can slip between.
                    self.pending = None
                    self.live = go_live
                    return
        finally:
            self.pumping = False

    async def _backfill(self, send: Send, upto: int | None) -> None:
        while not self.closed:
            want = PAGE if upto is None else min(PAGE, upto - self.last)
            if want <= 0:
                return
            entries = await self.hub.store.entries(self.incident, self.last, want)
            for entry in entries:
                if self.closed:
                    return
                if entry.seq == self.last + 1:
                    self.last = entry.seq
                    await send(Message.from_entry(entry))
            if len(entries) < want:
                return


async def behind_waiting_work() -> None:
    """Let the event loop run what is due (ready sockets, timers) before going on.

    ``asyncio.sleep(0)`` would not do: it queues the rest of the caller
    ahead of the sockets and timers that became ready meanwhile, so they
    would wait for one more slice. A timer due now is queued after them.
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    loop.call_at(loop.time(), _wake, woken)
    await woken


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Hub:
    """Hold this node's subscriptions by incident and feed them from the bus."""

    #: The clock that bounds a slice of a fan-out (a test may move its own).
    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(self, store: Store, metrics: Metrics, client_queue: int) -> None:
        self.store = store
        self.metrics = metrics
        self.client_queue = client_queue
        self.subscriptions: dict[str, set[Subscription]] = {}
        self.messages = 0
        #: The highest seq handed to this node's subscriptions, by incident:
        #: each of them gets every seq up to it by itself (filling any gap
        #: from the store), so a viewer behind it is merely slow, not missing
        #: a message the bus lost.
        self.latest: dict[str, int] = {}
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, coro: Coroutine[object, object, object]) -> None:
        """Run ``coro`` in the background (rare work: closing a slow client)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def subscribe(self, subscription: Subscription) -> Subscription:
        self.subscriptions.setdefault(subscription.incident, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subs = self.subscriptions.get(subscription.incident)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self.subscriptions[subscription.incident]
                self.latest.pop(subscription.incident, None)

    async def dispatch(self, message: Message) -> None:
        """Hand ``message`` to every local subscription of its incident, never waiting for one.

        The viewers are served in slices of ``SLICE_SECONDS``, and between two
        slices the loop runs whatever came due meanwhile (requests, timers):
        at 10,000 viewers one message is 70-90 ms of socket writes, which
        would otherwise hold up every other request. The caller awaits the
        whole fan-out before the next message, so each subscription still gets
        messages in order; one that subscribes meanwhile is not in the copy
        and reads the message from the store.
        """
        self.messages += 1
        subs = self.subscriptions.get(message.incident)
        if not subs:
            return
        if message.seq > self.latest.get(message.incident, 0):
            self.latest[message.incident] = message.seq
        # A copy: a slow client dropped during the loop leaves the set.
        found = tuple(subs)
        clock = self.clock
        deadline = clock() + SLICE_SECONDS
        for index, subscription in enumerate(found, 1):
            subscription.deliver(message)
            if not index % CLOCK_EVERY and clock() >= deadline:
                await behind_waiting_work()
                deadline = clock() + SLICE_SECONDS
        if message.published:
            self.metrics.fanout_latency.observe(max(0.0, time.time() - message.published))

    def all(self) -> list[Subscription]:
        return [s for subs in self.subscriptions.values() for s in subs]

    async def shutdown(self) -> None:
        """Tell every client the server is going away, so that it reconnects elsewhere."""
        subscriptions = self.all()
        if subscriptions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GOING_AWAY_WAIT):
                    await asyncio.gather(
                        *(s.going_away() for s in subscriptions), return_exceptions=True
                    )

    async def run(self, bus: Bus) -> None:
        """Listen on the bus until cancelled; after a failure, live clients resync."""
        await listen_forever(bus, self._receive, name="the hub", listening=self.ready)

    async def _receive(self, message: BusMessage) -> None:
        if isinstance(message, Resubscribed):
            for subscription in self.all():
                subscription.resync()
        else:
            await self.dispatch(Message.from_bus(message))


HUB = web.AppKey("hub", Hub)


async def _listen(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    async with background(hub.run(app[BUS]), "broadcaster-hub"):
        # Serve no client before the node listens, unless the bus is down
        # (clients then resync when it comes back).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_WAIT):
                await hub.ready.wait()
        yield
    for subscription in hub.all():
        subscription.close()


async def _going_away(app: web.Application) -> None:
    await app[HUB].shutdown()


def setup(app: web.Application) -> None:
    app[HUB] = Hub(app[STORE], app[METRICS], app[SETTINGS].client_queue)
    app.cleanup_ctx.append(_listen)
    app.on_shutdown.append(_going_away)
