"""Cap live connections per client and in total, and survive running out of descriptors.

Each WebSocket or SSE stream holds a socket, so a file descriptor, for as long
as the viewer stays. Two caps keep one client, or everyone together, from
taking them all:

- per client source (``clientaddr.source_of``: an IPv4 address or an IPv6
  /64), ``BROADCASTER_MAX_LIVE_PER_CLIENT`` streams (default 500: carriers put
  many phones behind one address, so the cap is generous and per node);
- in total, ``BROADCASTER_MAX_LIVE``, by default the descriptor limit less a
  reserve (a quarter, at least 64) kept for staff posts, the store, the bus
  and ordinary requests.

The live handlers are wrapped with ``capped`` (channels.live.websocket,
channels.live.sse), so no other request pays for the check. Over either cap the
stream is refused before it starts with 429
``too_many_live_connections`` and a ``Retry-After``, and the connection is
closed, so a refused client holds no descriptor either. A stream's slot is held by
the request's own task and freed when that task ends (after the WebSocket's
close handshake too, which aiohttp finishes after the handler returns).

``serve`` raises its soft ``RLIMIT_NOFILE`` to the hard limit at start. If
descriptors still run out (``EMFILE``), the log says so once per
``LOG_INTERVAL`` seconds however often it happens, and ``/readyz`` answers
503 until an interval passes without it, so a load balancer sends new
clients elsewhere while this node keeps serving those it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import TooManyRequests
from .clientaddr import source_of
from .middleware import error_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOG_INTERVAL = 10.0
RETRY_AFTER = 30
_EXHAUSTED = (errno.EMFILE, errno.ENFILE)


def raise_nofile() -> int:
    """Raise this process's soft descriptor limit to the hard one; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def default_total(nofile: int) -> int:
    """Return the total live cap for a descriptor limit: the limit less a reserve."""
    return max(16, nofile - max(64, nofile // 4))


class Descriptors:
    """Remember when descriptors last ran out; log that at most once per interval."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self.last_exhausted = -math.inf
        self._last_logged = -math.inf
        self.suppressed = 0

    def exhausted(self) -> bool:
        """Tell whether descriptors ran out within the last interval."""
        return time.monotonic() - self.last_exhausted < self.interval

    def note(self) -> bool:
        """Record one exhaustion; return whether it should be logged now."""
        moment = time.monotonic()
        self.last_exhausted = moment
        if moment - self._last_logged < self.interval:
            self.suppressed += 1
            return False
        self._last_logged = moment
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        """Let an exhaustion record through once per interval (a ``logging`` filter)."""
        if not _is_exhaustion(record):
            return True
        if not self.note():
            return False
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more like it not logged)"
            self.suppressed = 0
        record.exc_info = None  # one line; the traceback says nothing new each time
        return True

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route the loop's own exhaustion reports (failed accept) through ``note``."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in _EXHAUSTED:
                if self.note():
                    log.error("out of file descriptors: %s", context.get("message"))
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)


def _is_exhaustion(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, OSError) and exc.errno in _EXHAUSTED:
        return True
    return "Too many open files" in str(record.msg)


class LiveLimits:
    """Count live streams per source and in total; ``acquire`` refuses past either cap."""

    def __init__(self, per_client: int, total: int, descriptors: Descriptors) -> None:
        self.per_client = per_client
        self.total = total
        self.descriptors = descriptors
        self.open = 0
        self._by_source: dict[str, int] = {}

    def acquire(self, source: str) -> Callable[[], None]:
        """Take a slot for ``source``; return the function that frees it (call it once)."""
        if self.open >= self.total or self.descriptors.exhausted():
            raise _refused("this server has as many live connections as it can hold")
        held = self._by_source.get(source, 0)
        if held >= self.per_client:
            raise _refused("too many live connections from this address")
        self._by_source[source] = held + 1
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            left = self._by_source[source] - 1
            if left:
                self._by_source[source] = left
            else:
                del self._by_source[source]

        return release


def _refused(message: str) -> TooManyRequests:
    error = TooManyRequests(message, code="too_many_live_connections")
    error.headers["Retry-After"] = str(RETRY_AFTER)
    return error


LIVE_LIMITS = web.AppKey("live_limits", LiveLimits)
DESCRIPTORS = web.AppKey("descriptors", Descriptors)


def capped(handler: Handler) -> Handler:
    """Wrap a live handler so that it holds a slot for the whole life of its stream."""

    async def live(request: web.Request) -> web.StreamResponse:
        try:
            release = request.app[LIVE_LIMITS].acquire(source_of(request.remote))
        except TooManyRequests as refused:
            response = error_response(refused.status, refused.body(), refused.headers)
            response.force_close()  # a refused viewer keeps no descriptor here either
            return response
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aiohttp always runs a handler in a task
            try:
                return await handler(request)
            finally:
                release()
        # The task ends after aiohttp's own write_eof, i.e. after a WebSocket's close.
        task.add_done_callback(lambda _: release())
        return await handler(request)

    live.__name__ = live.__qualname__ = handler.__name__
    live.__module__ = handler.__module__
    return live


def open_descriptors() -> int | None:
    """Return how many descriptors this process has open (None where it cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def setup(app: web.Application, per_client: int, total: int | None) -> None:
    """Add the caps; ``total`` None means the current descriptor limit less the reserve."""
    descriptors = app[DESCRIPTORS] = Descriptors()
    if total is None:
        total = default_total(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    app[LIVE_LIMITS] = LiveLimits(per_client, total, descriptors)

    async def watch(app: web.Application) -> None:
        descriptors.install(asyncio.get_running_loop())

    app.on_startup.append(watch)
