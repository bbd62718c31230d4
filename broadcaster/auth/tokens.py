"""Check bearer tokens; only their SHA-256 hashes are ever stored.

Tokens are 32 random bytes (``bct_`` + base64url), so a plain SHA-256 is
enough to store them safely (no password stretching is needed for random
secrets) and lets a request be authenticated by one indexed lookup. The found
row's hash is compared again with ``hmac.compare_digest`` so that no timing
difference depends on how much of a guessed token is right.

Guessing is slowed, then stopped, for the failing client only (its source:
the client address of ``broadcaster.web.clientaddr``, one IPv6 /64 counting as
one): after ``SLOW_LIMIT`` unknown or revoked tokens within ``SLOW_WINDOW``
seconds it must pause until the oldest leaves that window, and after
``FAILED_LIMIT`` within ``FAILED_WINDOW`` seconds it is locked out for the rest
of that window; meanwhile a wrong token answers 429 ``too_many_failed_logins``
with a ``Retry-After`` and is not counted (waiting it out always works).
Every presented token is looked up first, so a valid token is never refused
because of failures, its holder's or anyone else's, from the same address:
behind a proxy or a carrier NAT many people share one. Tokens are 256 random
bits, so letting a locked-out guesser keep testing costs nothing in safety; the
lockout bounds the work and the noise. The counts live in this process, or
in Redis on several nodes (``broadcaster.web.ratelimit``: one limit for all nodes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from ..clock import format_ts, now
from ..errors import Forbidden, TooManyRequests, Unauthorized, Unprocessable
from ..store import tokens as tokens_store
from ..store.contract import JobDatabase as Database
from ..timeline.model import ROLES, Actor
from ..web.clientaddr import source_of
from ..web.middleware import STAFF_ANSWER

log = logging.getLogger(__name__)
TOKEN_PREFIX = "bct_"
#: Failed token checks allowed per source within ``FAILED_WINDOW`` seconds (the lockout).
FAILED_LIMIT = 20
FAILED_WINDOW = 300.0
#: Failed token checks allowed per source within ``SLOW_WINDOW`` seconds (the slow-down).
SLOW_LIMIT = 5
SLOW_WINDOW = 10.0
#: Addresses remembered at most; the oldest is forgotten first (bounded memory).
FAILED_ADDRESSES = 10_000


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class FailedLogins:
    """Count failed token checks per client address in a sliding window."""

    def __init__(
        self,
        limit: int = FAILED_LIMIT,
        window: float = FAILED_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Return the seconds ``address`` must wait before its next try (0: go ahead)."""
        times = self._failures.get(address)
        if times is None:
            return 0.0
        moment = self.clock()
        while times and times[0] <= moment - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return 0.0
        return times[0] + self.window - moment if len(times) >= self.limit else 0.0

    async def check(self, address: str) -> float:
        """Return the seconds ``address`` must wait (the ``ratelimit.Limiter`` verb)."""
        return self.retry_after(address)

    async def count(self, address: str) -> float:
        """Count a failure of ``address``; return the wait that now applies."""
        self.failed(address)
        return self.retry_after(address)

    def failed(self, address: str) -> None:
        times = self._failures.pop(address, None) or deque(maxlen=self.limit)
        self._failures[address] = times  # re-inserted: the dict keeps recent addresses last
        times.append(self.clock())
        if len(times) == self.limit and self.window >= FAILED_WINDOW:
            log.warning("%d failed token checks from %s: refusing it for now", self.limit, address)
        while len(self._failures) > FAILED_ADDRESSES:
            del self._failures[next(iter(self._failures))]


class Tokens:
    """Create, look up and revoke tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.failures = FailedLogins()
        self.slow = FailedLogins(SLOW_LIMIT, SLOW_WINDOW)

    async def create(self, name: str, department: str, role: str) -> tuple[int, str]:
        if role not in ROLES:
            raise Unprocessable(f"role must be one of {', '.join(ROLES)}", field="role")
        token = new_token()
        digest, at = hash_token(token), format_ts(now())
        token_id = await self.db.write(
            lambda conn: tokens_store.insert(conn, name, department, role, digest, at)
        )
        return token_id, token

    async def count(self) -> int:
        return await self.db.read(tokens_store.count)

    async def revoke(self, token_id: int) -> bool:
        at = format_ts(now())
        return await self.db.write(lambda conn: tokens_store.revoke(conn, token_id, at))

    async def lookup(self, token: str) -> Actor | None:
        digest = hash_token(token)
        row = await self.db.read(lambda conn: tokens_store.active_by_hash(conn, digest))
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            return None
        return Actor(row["name"], row["department"], row["role"], row["id"])


TOKENS = web.AppKey("tokens", Tokens)


async def optional_actor(request: web.Request) -> Actor | None:
    """Return the caller if a valid token is presented; raise 401 on a bad one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    STAFF_ANSWER.set(True)  # whatever follows is a staff answer: never stored by caches
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <token>'", code="bad_authorization")
    tokens = request.app[TOKENS]
    actor = await tokens.lookup(token.strip())
    if actor is not None:
        return actor
    source = source_of(request.remote)
    wait = max(await tokens.failures.check(source), await tokens.slow.check(source))
    if wait > 0:
        refused = TooManyRequests(
            "too many failed token checks from this address; try again later",
            code="too_many_failed_logins",
        )
        refused.headers["Retry-After"] = str(math.ceil(wait))
        raise refused
    await tokens.slow.count(source)
    await tokens.failures.count(source)
    raise Unauthorized("the token is unknown or revoked", code="invalid_token")


async def require(request: web.Request, role: str) -> Actor:
    """Return the caller, who must hold ``role`` or a higher one."""
    actor = await optional_actor(request)
    if actor is None:
        raise Unauthorized("this needs a bearer token", code="token_required")
    if not actor.can(role):
        raise Forbidden(f"this needs the {role} role", code="role_required")
    return actor
