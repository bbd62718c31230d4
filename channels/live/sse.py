"""Serve ``GET /api/incidents/{id}/events``: the live timeline as Server-Sent Events.

Each entry is one event: ``id:`` its seq, ``event: entry``, ``data:`` the
entry JSON on one line, with the WebSocket's guarantees (backlog, then live,
in seq order, no gap, no duplicate; see ``channels.live.hub``). A reconnecting
``EventSource`` sends ``Last-Event-ID``, which wins over ``?after=`` (the
browser repeats the original URL). The stream opens with a ``retry:`` hint
spread over a few seconds, so that clients cut off together do not all come
back in the same instant.

Live events take the WebSocket's path (``channels.live.direct``):
each entry is encoded once as a complete HTTP chunk (chunk size, event,
CRLF; the bare event on an HTTP/1.0 stream, which is not chunked) and the
hub writes those same bytes to every stream's socket with
``transport.write``. No coroutine runs per viewer and message: the backlog is
sent by the handler through aiohttp, then the stream is served from
``LiveStream.write_eof``, which only waits for the end. Measured with
``bench/fanout.py --transport sse`` against a coroutine per stream draining
its queue (docs/live.md "Measured capacity").

One task writes a comment line (``: heartbeat``) to every stream once per
``HEARTBEAT`` seconds (15 by default, always under 20), spread over the
interval, so proxies keep the stream open; a stream whose socket has closed
is ended there (aiohttp does not tell an idle handler that its client left).

A client is "too slow" when more than ``client_queue`` events sit in user
space waiting for its socket: the stream ends after the events already
written, with a comment ``: too slow: reconnect with Last-Event-ID N``, and
the connection is closed (aborted if it has not read them ``CLOSE_GRACE``
seconds later). ``EventSource`` reconnects by itself with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from broadcaster.api.common import incident_or_404, query_int
from broadcaster.appkeys import METRICS
from broadcaster.background import background
from broadcaster.errors import BadRequest
from broadcaster.web.livecap import capped
from broadcaster.web.middleware import SERVER

from .direct import DirectSubscription, every_started
from .hub import CLOSE_GRACE, HUB, Hub, Message

HEARTBEAT = web.AppKey("sse_heartbeat", float)
DEFAULT_HEARTBEAT = 15.0
#: Reconnect hint range (milliseconds), drawn per stream.
RETRY_MS = (1000, 5000)
HEARTBEAT_EVENT = b": heartbeat\n\n"


def sse_event(message: Message) -> bytes:
    """Encode ``message`` as one event; the entry JSON never contains a newline."""
    return f"id: {message.seq}\nevent: entry\ndata: {message.entry_json}\n\n".encode()


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk (RFC 9112 7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def sse_chunk(message: Message) -> bytes:
    return chunk(message.encoded("sse", sse_event))


HEARTBEAT_CHUNK = chunk(HEARTBEAT_EVENT)


def resume_point(request: web.Request) -> int:
    """Return the seq to resume after: ``Last-Event-ID`` first, then ``?after=``."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw.strip() == "":
        return query_int(request, "after", 0, 0, 10**12)
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise BadRequest(
            "Last-Event-ID must be the seq of the last event received",
            code="invalid_last_event_id",
            field="Last-Event-ID",
        )
    return int(raw)


class SSESubscription(DirectSubscription):
    """A subscription whose live events go straight to the socket, as whole chunks."""

    __slots__ = ("response", "chunked")

    def __init__(self, hub: Hub, incident: str, after: int, response: LiveStream) -> None:
        super().__init__(hub, incident, after)
        self.response = response
        self.chunked = True

    def frame(self, message: Message) -> bytes:
        if self.chunked:
            return message.encoded("sse-chunk", sse_chunk)
        return message.encoded("sse", sse_event)

    async def send(self, message: Message) -> None:
        await self.response.write(message.encoded("sse", sse_event))

    def heartbeat(self) -> None:
        """Write the heartbeat comment, or end the stream if its client has gone."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.is_closing():
            self.close()
            return
        transport.write(HEARTBEAT_CHUNK if self.chunked else HEARTBEAT_EVENT)

    def on_drop(self) -> None:
        # LiveStream ends the stream; if the socket stays full, only aborting frees it.
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


class LiveStream(web.StreamResponse):
    """An event stream that goes on serving after its handler has returned.

    As for ``channels.live.websocket.LiveSocket``: aiohttp calls ``write_eof()``
    once the handler and the middlewares are done with the response, so
    waiting there for the end frees their coroutine frames for the life of the
    stream. Live events never pass through here: the hub writes them.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._live: tuple[SSESubscription, Gauge] | None = None

    def serve_after_return(self, subscription: SSESubscription, gauge: Gauge) -> None:
        self._live = (subscription, gauge)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._live is not None:
            (subscription, gauge), self._live = self._live, None
            try:
                await subscription.closed_wait()
                if subscription.dropped:
                    self.force_close()
                    reason = f": too slow: reconnect with Last-Event-ID {subscription.last}\n\n"
                    await self.write(reason.encode())
            except ConnectionError:
                pass  # the client went away; nothing to tell it
            finally:
                subscription.close()
                gauge.dec()
        with contextlib.suppress(ConnectionError):
            await super().write_eof(data)


async def events(request: web.Request) -> web.StreamResponse:
    app = request.app
    hub = app[HUB]
    response = LiveStream(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Server": SERVER,
            "Access-Control-Allow-Origin": "*",
        }
    )
    subscription = SSESubscription(
        hub, request.match_info["incident"], resume_point(request), response
    )
    # Subscribe before reading anything, so nothing posted meanwhile is missed.
    hub.subscribe(subscription)
    gauge = app[METRICS].connections.labels(transport="sse")
    prepared = handed_over = False
    try:
        await incident_or_404(request)
        await response.prepare(request)
        prepared = True
        gauge.inc()
        subscription.transport = request.transport
        subscription.chunked = response.headers.get("Transfer-Encoding") == "chunked"
        # Through aiohttp: it also sends the headers, before any direct write.
        await response.write(f"retry: {random.randint(*RETRY_MS)}\n\n".encode())
        await subscription.pump(subscription.send, go_live=True)
        subscription.started = True
        response.serve_after_return(subscription, gauge)
        handed_over = True
    except ConnectionError:
        pass  # the client went away
    finally:
        if not handed_over:
            subscription.close()
            if prepared:
                gauge.dec()
    return response


async def _heartbeats(app: web.Application) -> AsyncIterator[None]:
    async with background(
        every_started(app[HUB], SSESubscription, app[HEARTBEAT], SSESubscription.heartbeat),
        "broadcaster-sse-heartbeat",
    ):
        yield


def setup(app: web.Application) -> None:
    if HUB not in app:
        raise RuntimeError("list channels.live.hub before channels.live.sse")
    app.setdefault(HEARTBEAT, DEFAULT_HEARTBEAT)
    app.router.add_get("/api/incidents/{incident}/events", capped(events))
    app.cleanup_ctx.append(_heartbeats)
