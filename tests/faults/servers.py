"""Run the whole app on a loopback port from a thread, for callers that are not async.

Hypothesis and schemathesis drive synchronous test functions; this serves the
app on its own event loop in a daemon thread so those functions can call it
over real HTTP. ``get`` sends a raw request target (any query string, even one
that is not valid UTF-8 once decoded) with ``http.client``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from typing import Any

from aiohttp import web

from broadcaster.app import create_app
from broadcaster.auth.tokens import TOKENS
from broadcaster.settings import Settings


class ThreadedServer:
    """Serve ``create_app(settings)`` on 127.0.0.1 from a background thread."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.app: web.Application | None = None
        self.port = 0
        self.token = ""
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        self.run(self._start())
        return self

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout * 3)

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        _, self.token = await self.app[TOKENS].create("测试管理员", "应急管理局", "admin")

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(self.timeout)

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request with ``target`` exactly as given; return status, headers, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            sent = dict(headers or {})
            data = None
            if body is not None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                sent.setdefault("Content-Type", "application/json")
            conn.request(method, target, body=data, headers=sent)
            response = conn.getresponse()
            answer = {k.lower(): v for k, v in response.getheaders()}
            # An event stream never ends: its status and headers are enough.
            stream = answer.get("content-type", "").startswith("text/event-stream")
            return response.status, answer, b"" if stream else response.read()
        finally:
            conn.close()

    def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", target)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as the admin, expecting a 2xx JSON answer."""
        status, _, data = self.request(
            "POST", path, body, {"Authorization": f"Bearer {self.token}"}
        )
        if status >= 300:
            raise AssertionError(f"POST {path} answered {status}: {data[:300]!r}")
        return json.loads(data)
