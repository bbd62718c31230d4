"""Let admins list bearer tokens and revoke them over HTTP (the shell: ``broadcaster.cli.tokens``).

``GET /api/tokens`` (admin) lists every token with its owner, role and dates,
never a secret (only hashes are stored, and not even those are shown).
``DELETE /api/tokens/{id}`` (admin) revokes one at once: the next request
with it answers 401, since every request looks the token up afresh (no cache
to expire). Revoking is recorded in the audit log in the same transaction.
The last active admin token cannot be revoked over HTTP (409
``last_admin_token``), so that nobody locks the service out of its own
administration; ``broadcaster token revoke ID`` on the server can, since
``broadcaster token create`` there can always make a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..api.common import json_response, remote_of
from ..appkeys import DB
from ..clock import now_ts
from ..errors import Conflict, NotFound
from ..store import tokens as tokens_store
from ..store.timeline import audit_row
from ..timeline.model import Actor
from .tokens import require


def token_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("id", "name", "department", "role", "created_at")} | {
        "revoked_at": row["revoked_at"],
        "active": row["revoked_at"] is None,
    }


def list_tokens(conn: Any) -> list[dict[str, Any]]:
    """Return every token, newest first, without secrets."""
    return [token_dict(row) for row in tokens_store.every(conn)]


def revoke_token(
    conn: Any,
    token_id: int,
    actor: Actor | None,
    remote: str | None,
    *,
    keep_last_admin: bool,
) -> dict[str, Any]:
    """Revoke ``token_id`` inside the caller's transaction and return it."""
    row = tokens_store.one(conn, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}", code="token_not_found")
    if row["revoked_at"] is not None:
        raise Conflict(f"token {token_id} was already revoked", code="token_already_revoked")
    if keep_last_admin and row["role"] == "admin" and tokens_store.count_active_admins(conn) <= 1:
        raise Conflict(
            "this is the last active admin token; create another admin first",
            code="last_admin_token",
        )
    at = now_ts()
    tokens_store.revoke(conn, token_id, at)
    detail = {"name": row["name"], "department": row["department"], "role": row["role"]}
    audit_row(conn, actor, "token.revoke", f"token/{token_id}", detail, remote)
    return {**token_dict(row), "revoked_at": at, "active": False}


async def get_tokens(request: web.Request) -> web.Response:
    await require(request, "admin")
    return json_response({"tokens": await request.app[DB].read(list_tokens)})


async def delete_token(request: web.Request) -> web.Response:
    actor = await require(request, "admin")
    raw = request.match_info["token"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"no token {raw!r}", code="token_not_found")
    remote = remote_of(request)
    revoked = await request.app[DB].write(
        lambda conn: revoke_token(conn, int(raw), actor, remote, keep_last_admin=True)
    )
    return json_response(revoked)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/tokens", get_tokens)
    app.router.add_delete("/api/tokens/{token}", delete_token)
