"""Keep rate limits per node (in memory) or across nodes (in Redis), behind one interface.

A ``Limiter`` has two verbs, both keyed by a client address or similar:
``check(key)`` returns the seconds ``key`` must still wait (0: go ahead)
without counting anything, and ``count(key)`` counts one event and returns the
wait that applies after it. The in-process limiters (``auth.FailedLogins``, a
sliding window, and ``questions.TokenBucket``) implement it; on several nodes
``shared_window`` and ``shared_bucket`` return the same limit kept in Redis,
updated by one Lua script per call so concurrent nodes cannot both take the
last token, and ``shared_pacer`` spaces the SMS sent by every worker.

Time comes from the calling node's wall clock (``clock``, passed to the
script): nodes run NTP, and a skew of milliseconds is nothing against windows
of minutes. When Redis cannot answer, the limiter falls back to its
in-process twin for that call (limits per node again, never none) and logs it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any, Protocol

from aiohttp import web
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from ..appkeys import SETTINGS

log = logging.getLogger(__name__)
PREFIX = "broadcaster:limit:"

_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], now, ARGV[5])
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1)
    redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
if redis.call('ZCARD', KEYS[1]) < limit then return '0' end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
return tostring(tonumber(oldest) + window - now)
"""
_BUCKET = """
local now, capacity, per = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) / per)
local wait = 0
if tokens < 1 then wait = (1 - tokens) * per elseif ARGV[4] == '1' then tokens = tokens - 1 end
if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * per * 1000))
end
return tostring(wait)
"""
_PACE = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil(interval * 1000) + 1000)
return tostring(slot - now)
"""


class Limiter(Protocol):
    async def check(self, key: str) -> float: ...

    async def count(self, key: str) -> float: ...


class _Shared:
    """Run one limit script in Redis, or ``local`` while Redis cannot answer."""

    _events = itertools.count()

    def __init__(self, client: AsyncRedis, name: str, script: str, local: Any) -> None:
        self.name = name
        self.local = local
        # The wall clock, shared by the nodes (``local`` may count in monotonic time).
        object.__setattr__(self, "clock", time.time)
        self._script = client.register_script(script)
        self._failing = False

    def __getattr__(self, attribute: str) -> Any:
        # limit, window, capacity, per_seconds: one set of parameters for both twins.
        if attribute == "local":
            raise AttributeError(attribute)
        return getattr(self.local, attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        if attribute in ("limit", "window", "capacity", "per_seconds"):
            setattr(self.local, attribute, value)
            return
        if attribute == "clock" and "local" in self.__dict__:
            self.local.clock = value  # a test's fake clock drives both twins
        super().__setattr__(attribute, value)

    async def _run(self, key: str, args: list[Any]) -> float | None:
        try:
            result = float(await self._script(keys=[PREFIX + self.name + ":" + key], args=args))
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("rate limit %s falls back to this node: %s", self.name, exc)
            self._failing = True
            return None
        self._failing = False
        return max(0.0, result)


class SharedWindow(_Shared):
    """``auth.FailedLogins`` across nodes: at most ``limit`` events per ``window`` seconds."""

    async def check(self, key: str) -> float:
        found = await self._run(key, [self.clock(), self.window, self.limit, 0, ""])
        return await self.local.check(key) if found is None else found

    async def count(self, key: str) -> float:
        event = f"{self.clock()!r}:{next(self._events)}"
        found = await self._run(key, [self.clock(), self.window, self.limit, 1, event])
        return await self.local.count(key) if found is None else found


class SharedBucket(_Shared):
    """``questions.TokenBucket`` across nodes: ``capacity`` at once, one per ``per_seconds``."""

    async def check(self, key: str) -> float:
        found = await self._run(key, [self.clock(), self.capacity, self.per_seconds, 0])
        return await self.local.check(key) if found is None else found

    async def count(self, key: str) -> float:
        found = await self._run(key, [self.clock(), self.capacity, self.per_seconds, 1])
        return await self.local.count(key) if found is None else found


class SharedPacer(_Shared):
    """Space events ``interval`` seconds apart across nodes (the SMS send rate)."""

    async def wait(self) -> None:
        found = await self._run("pace", [time.time(), self.interval])
        if found is None:
            await self.local.wait()
        elif found > 0:
            await asyncio.sleep(found)


_CLIENT = web.AppKey("ratelimit_redis", AsyncRedis)


def _client(app: web.Application) -> AsyncRedis | None:
    url = app[SETTINGS].redis_url
    if not url:
        return None
    if _CLIENT not in app:
        client = app[_CLIENT] = AsyncRedis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )

        async def close(_: web.Application) -> None:
            await client.aclose()

        app.on_cleanup.append(close)
    return app[_CLIENT]


def shared_window(app: web.Application, name: str, local: Any) -> Any:
    """Return ``local`` (a sliding window) on one node, its Redis twin with Redis configured."""
    client = _client(app)
    return local if client is None else SharedWindow(client, name, _WINDOW, local)


def shared_bucket(app: web.Application, name: str, local: Any) -> Any:
    """Return ``local`` (a token bucket) on one node, its Redis twin with Redis configured."""
    client = _client(app)
    return local if client is None else SharedBucket(client, name, _BUCKET, local)


def shared_pacer(app: web.Application, name: str, local: Any) -> Any:
    """Return ``local`` (with ``interval`` and ``wait()``) on one node, else its Redis twin."""
    client = _client(app)
    return local if client is None else SharedPacer(client, name, _PACE, local)
