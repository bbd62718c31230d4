"""Serve ``GET /api/incidents/{id}/events``: the live timeline as Server-Sent Events.

Each entry is one event: ``id:`` its seq, ``event: entry``, ``data:`` the
entry JSON on one line, with the WebSocket's guarantees (backlog, then live,
in seq order, no gap, no duplicate; see ``channels.hub``). A reconnecting
``EventSource`` sends ``Last-Event-ID``, which wins over ``?after=`` (the
browser repeats the original URL). The stream opens with a ``retry:`` hint
spread over a few seconds, so that clients cut off together do not all come
back in the same instant.

A comment line (``: heartbeat``) is written after ``HEARTBEAT`` seconds (15 by
default, always under 20) without an event, so proxies keep the stream open
and dead peers are noticed. Headers turn off caching and proxy buffering.

Unlike the WebSocket, each SSE client has a coroutine that drains its bounded
queue: SSE rides on chunked HTTP, whose framing aiohttp owns. A client whose
queue is full is dropped (the stream ends; if its socket is stuck, it is
aborted ``CLOSE_GRACE`` seconds later) and resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from broadcaster.api.common import incident_or_404, query_int
from broadcaster.appkeys import METRICS
from broadcaster.errors import BadRequest

from .hub import CLOSE_GRACE, HUB, Hub, Message, Subscription

HEARTBEAT = web.AppKey("sse_heartbeat", float)
DEFAULT_HEARTBEAT = 15.0
#: Reconnect hint range (milliseconds), drawn per stream.
RETRY_MS = (1000, 5000)


def sse_event(message: Message) -> bytes:
    """Encode ``message`` as one event; the entry JSON never contains a newline."""
    return f"id: {message.seq}\nevent: entry\ndata: {message.entry_json}\n\n".encode()


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


class SSESubscription(Subscription):
    """A subscription drained by its own coroutine."""

    __slots__ = ("transport",)

    def __init__(self, hub: Hub, incident: str, after: int) -> None:
        super().__init__(hub, incident, after, hub.client_queue)
        self.transport: asyncio.BaseTransport | None = None

    def on_drop(self) -> None:
        # The coroutine ends the stream when it wakes; if it is stuck writing
        # to a full socket, only aborting the connection frees it.
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


async def events(request: web.Request) -> web.StreamResponse:
    app = request.app
    hub = app[HUB]
    subscription = SSESubscription(hub, request.match_info["incident"], resume_point(request))
    hub.subscribe(subscription)
    gauge = app[METRICS].connections.labels(transport="sse")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Access-Control-Allow-Origin": "*",
        }
    )
    prepared = False
    try:
        await incident_or_404(request)
        await response.prepare(request)
        prepared = True
        gauge.inc()
        subscription.transport = request.transport

        async def send(message: Message) -> None:
            await response.write(message.encoded("sse", sse_event))

        await response.write(f"retry: {random.randint(*RETRY_MS)}\n\n".encode())
        heartbeat = app[HEARTBEAT]
        await subscription.pump(send)
        while not subscription.closed:
            try:
                async with asyncio.timeout(heartbeat):
                    await subscription.wait()
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
            else:
                await subscription.pump(send)
    except ConnectionError:
        pass  # the client went away
    finally:
        subscription.close()
        if prepared:
            gauge.dec()
    return response


def setup(app: web.Application) -> None:
    if HUB not in app:
        raise RuntimeError("list channels.hub before channels.sse")
    app.setdefault(HEARTBEAT, DEFAULT_HEARTBEAT)
    app.router.add_get("/api/incidents/{incident}/events", events)
