"""Check bearer tokens; only their SHA-256 hashes are ever stored.

Tokens are 32 random bytes (``bct_`` + base64url), so a plain SHA-256 is
enough to store them safely (no password stretching is needed for random
secrets) and lets a request be authenticated by one indexed lookup. The found
row's hash is compared again with ``hmac.compare_digest`` so that no timing
difference depends on how much of a guessed token is right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3

from aiohttp import web

from .clock import format_ts, now
from .db import Database
from .errors import Forbidden, Unauthorized, Unprocessable
from .model import ROLES, Actor

TOKEN_PREFIX = "bct_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Tokens:
    """Create, look up and revoke tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, department: str, role: str) -> tuple[int, str]:
        if role not in ROLES:
            raise Unprocessable(f"role must be one of {', '.join(ROLES)}", field="role")
        token = new_token()

        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO tokens (name, department, role, token_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, department, role, hash_token(token), format_ts(now())),
            )
            return int(cur.lastrowid or 0)

        return await self.db.write(job), token

    async def count(self) -> int:
        return await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])

    async def revoke(self, token_id: int) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (format_ts(now()), token_id),
            )
            return cur.rowcount == 1

        return await self.db.write(job)

    async def lookup(self, token: str) -> Actor | None:
        digest = hash_token(token)

        def job(conn: sqlite3.Connection) -> Actor | None:
            row = conn.execute(
                "SELECT id, name, department, role, token_hash FROM tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
            if row is None or not hmac.compare_digest(row["token_hash"], digest):
                return None
            return Actor(row["name"], row["department"], row["role"], row["id"])

        return await self.db.read(job)


TOKENS = web.AppKey("tokens", Tokens)


async def optional_actor(request: web.Request) -> Actor | None:
    """Return the caller if a valid token is presented; raise 401 on a bad one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <token>'", code="bad_authorization")
    actor = await request.app[TOKENS].lookup(token.strip())
    if actor is None:
        raise Unauthorized("the token is unknown or revoked", code="invalid_token")
    return actor


async def require(request: web.Request, role: str) -> Actor:
    """Return the caller, who must hold ``role`` or a higher one."""
    actor = await optional_actor(request)
    if actor is None:
        raise Unauthorized("this needs a bearer token", code="token_required")
    if not actor.can(role):
        raise Forbidden(f"this needs the {role} role", code="role_required")
    return actor
