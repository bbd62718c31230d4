"""A local webhook endpoint for tests: records every request, answers as the test scripts it.

Usage::

    async with Receiver() as receiver:
        receiver.answers = [500, 500]          # then 200 for the rest
        ... register receiver.url ...
        request = await receiver.next(TIMEOUT)  # a Received (headers, body, at)

``hold`` (an ``asyncio.Event``) makes every request wait until it is set, so
a test can act while a delivery is in flight; ``holding`` is set when a
request is being held.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Received:
    """One request as the endpoint saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class Receiver:
    """Run an aiohttp endpoint on 127.0.0.1 (a free port) that records requests."""

    answers: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[Received] = field(default_factory=list)
    _queue: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    _server: TestServer | None = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/hook"))

    def url_for(self, path: str) -> str:
        assert self._server is not None
        return str(self._server.make_url(path))

    async def next(self, timeout: float) -> Received:  # noqa: ASYNC109 - test helper API
        """Return the next request that arrives (or one already waiting)."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read(), time.time())
        self.received.append(received)
        self._queue.put_nowait(received)
        if self.hold is not None and not self.hold.is_set():
            self.holding.set()
            await self.hold.wait()
        answer: Any = self.answers.pop(0) if self.answers else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=headers)
