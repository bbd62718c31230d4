"""Serve ``GET /ws/incidents/{id}?after=SEQ``: an incident's timeline, live, over WebSocket.

The client gets ``{"type": "hello", "incident": {...}, "head": {...}}``, then
every entry with ``seq > after`` as ``{"type": "entry", "entry": {...}}``:
backlog first (read from the store in pages, with backpressure), then live,
in seq order, with no gap and no duplicate (``channels.live.hub`` explains how).

Live frames skip the per-client coroutine: the hub encodes each entry as a
complete WebSocket frame once, and writes those same bytes to every socket
with ``transport.write``, which never waits. Measured with ``bench/fanout.py``
(5,000 viewers, 10 entries/s) against the textbook design, a bounded queue and
a task per client awaiting aiohttp's ``send_str``: 6.8 instead of 19.7 µs of
server CPU per delivered message, p99 latency 208 instead of 675 ms, 14.4
instead of 19.1 KB per idle connection (BENCHMARKS.md). aiohttp's
``WebSocketResponse`` still does the handshake and the close handshake, and
parses what clients send; its own writes are whole frames too, so the two
never interleave within a frame.

The mechanics (the byte accounting of the slow-client rule, the catch-up
task made only for a gap) are shared with SSE in ``channels.live.direct``.

Pings come from one task that walks every socket once per ``HEARTBEAT``
seconds, spread over the interval, and writes the same two-byte frame, rather
than from a timer per connection (aiohttp's ``heartbeat=``): at 10,000 viewers
that is 10,000 fewer timers and about half a kilobyte less per idle
connection. A socket that has not answered a ping, nor sent anything, by the
next round is aborted.

A client is "too slow" when more than ``client_queue`` frames sit in user
space waiting for its socket (the kernel's buffer is already full): it is
closed with code 4008 after the frames already written, and aborted if it
still has not read them ``CLOSE_GRACE`` seconds later. It should reconnect
with ``after=`` its last seq.

Clients have nothing to say on this socket: text frames are ignored, binary
frames close it with 1003, frames over ``MAX_CLIENT_MESSAGE`` bytes with 1009
and invalid UTF-8 with 1007. permessage-deflate is off: compressing the same
frame once per client would cost more CPU than the bandwidth it saves.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import Gauge

from broadcaster.api.common import incident_or_404, query_int
from broadcaster.appkeys import METRICS
from broadcaster.background import background
from broadcaster.web.livecap import capped
from broadcaster.web.middleware import SERVER

from .direct import DirectSubscription, every_started
from .hub import CLOSE_GRACE, HUB, Hub, Message

#: Seconds between protocol pings; a client that has not answered one ping
#: (or sent anything) by the next is aborted, so dead connections are reaped.
HEARTBEAT = web.AppKey("ws_heartbeat", float)
DEFAULT_HEARTBEAT = 25.0
PING_FRAME = b"\x89\x00"
MAX_CLIENT_MESSAGE = 4096
SLOW_CLOSE = 4008
_FINAL = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


def ws_frame(message: Message) -> bytes:
    """Encode ``message`` as one unmasked, uncompressed text frame (RFC 6455 5.2)."""
    payload = message.frame.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class WebSocketSubscription(DirectSubscription):
    """A subscription whose live frames go straight to the socket."""

    __slots__ = ("ws", "unanswered")

    def __init__(self, hub: Hub, incident: str, after: int, ws: web.WebSocketResponse) -> None:
        super().__init__(hub, incident, after)
        self.ws = ws
        self.unanswered = False  # a ping went out and nothing came back since

    def frame(self, message: Message) -> bytes:
        return message.encoded("ws", ws_frame)

    async def send(self, message: Message) -> None:
        await self.ws.send_str(message.frame)

    def on_drop(self) -> None:
        reason = f"too slow: reconnect with after={self.last}".encode()
        self.hub.spawn(self.ws.close(code=SLOW_CLOSE, message=reason, drain=False))
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)

    def ping(self) -> None:
        """Ping the client, or abort it if it did not answer the previous ping."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        if self.unanswered:
            transport.abort()  # dead peer: its receive loop ends and cleans up
            return
        self.unanswered = True
        transport.write(PING_FRAME)

    async def going_away(self) -> None:
        self.close()
        if not self.ws.closed and self.ws.prepared:
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server restarting")


class LiveSocket(web.WebSocketResponse):
    """A WebSocket response that goes on serving after its handler has returned.

    aiohttp calls ``write_eof()`` once the handler has returned its response
    and every middleware has finished with it. Serving the live phase there,
    rather than inside the handler, frees the handler's and the middlewares'
    coroutine frames for the life of the connection: about a kilobyte per
    idle viewer, which is most of what separates a connection here from a
    bare aiohttp one (see BENCHMARKS.md).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._live: tuple[WebSocketSubscription, Gauge] | None = None

    def serve_after_return(self, subscription: WebSocketSubscription, gauge: Gauge) -> None:
        self._live = (subscription, gauge)

    # The signature of WebSocketResponse.write_eof, which aiohttp declares with
    # this same ignore (a socket's end takes no trailing body).
    async def write_eof(self) -> None:  # type: ignore[override]
        if self._live is not None:
            (subscription, gauge), self._live = self._live, None
            try:
                # Inline rather than a helper: one coroutine frame less per viewer.
                while True:
                    message = await self.receive()
                    subscription.unanswered = False  # any frame shows the client is alive
                    kind = message.type
                    if kind is WSMsgType.PING:
                        await self.pong(message.data)
                    elif kind is WSMsgType.BINARY:
                        await self.close(
                            code=WSCloseCode.UNSUPPORTED_DATA,
                            message=b"this socket takes no binary",
                        )
                        break
                    elif kind in _FINAL:
                        break
            except ConnectionError:
                pass  # the client went away; nothing to tell it
            finally:
                subscription.close()
                gauge.dec()
                self._drop_tracebacks()
        await super().write_eof()

    def _drop_tracebacks(self) -> None:
        """Forget the tracebacks of the errors aiohttp keeps once the socket has closed.

        ``close()`` keeps a failed write's error (its context the ``EofStream``
        that ended ``receive()``), and the reader may keep an error too, each
        with a traceback whose frames hold this response: a reference cycle of
        about 40 objects per closed connection, which only a full garbage
        collection frees, and none while it is frozen (``broadcaster.gc_pauses``).
        Without the tracebacks, reference counting frees a closed connection.
        """
        reader = self._reader
        for error in (self.exception(), reader.exception() if reader is not None else None):
            while error is not None:  # the error it interrupted, too (``__context__``)
                error.__traceback__ = None
                error = error.__context__


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    hub = app[HUB]
    after = query_int(request, "after", 0, 0, 10**12)
    # heartbeat=None and autoping=False: one task pings every socket (see
    # _ping_all) instead of a timer per connection, and LiveSocket answers pings.
    ws = LiveSocket(
        heartbeat=None,
        autoping=False,
        compress=False,
        max_msg_size=MAX_CLIENT_MESSAGE,
        timeout=CLOSE_GRACE,
    )
    ws.headers["Server"] = SERVER
    subscription = WebSocketSubscription(hub, request.match_info["incident"], after, ws)
    # Subscribe before reading anything, so nothing posted meanwhile is missed.
    hub.subscribe(subscription)
    gauge = app[METRICS].connections.labels(transport="websocket")
    prepared = handed_over = False
    try:
        incident = await incident_or_404(request)  # a JSON 404 before upgrading
        await ws.prepare(request)
        prepared = True
        gauge.inc()
        subscription.transport = request.transport
        hello = {"type": "hello", "incident": incident, "head": incident["head"]}
        await ws.send_str(json.dumps(hello, ensure_ascii=False))
        await subscription.pump(subscription.send, go_live=True)
        subscription.started = True
        ws.serve_after_return(subscription, gauge)
        handed_over = True
    except ConnectionError:
        pass  # the client went away; nothing to tell it
    finally:
        if not handed_over:
            subscription.close()
            if prepared:
                gauge.dec()
    return ws


async def _ping_all(app: web.Application) -> AsyncIterator[None]:
    """Ping every live socket once per ``HEARTBEAT``; abort those that never answered."""
    async with background(
        every_started(app[HUB], WebSocketSubscription, app[HEARTBEAT], WebSocketSubscription.ping),
        "broadcaster-ws-ping",
    ):
        yield


def setup(app: web.Application) -> None:
    if HUB not in app:
        raise RuntimeError("list channels.live.hub before channels.live.websocket")
    app.setdefault(HEARTBEAT, DEFAULT_HEARTBEAT)
    app.router.add_get("/ws/incidents/{incident}", capped(websocket))
    app.cleanup_ctx.append(_ping_all)
