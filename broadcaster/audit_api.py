"""Serve the audit log to admins: every write, acknowledgement and redaction, newest first.

``GET /api/audit?action=&incident=&actor=&before=&limit=`` (admin). Each
record says who (token name, department, role), when (server clock, UTC),
from where (the peer address aiohttp saw; behind a reverse proxy that is the
proxy unless it is configured to pass the client address), what (``action``,
``target``) and the details the writer recorded. The log itself is
append-only (SQLite triggers refuse UPDATE and DELETE).

Filters: ``action`` is exact (``entry.redact``) or a prefix ending in ``*``
(``draft.*``); ``incident`` matches the incident itself, its entries
(``ID#seq``) and its drafts (``ID/drafts/...``). Paging is by cursor:
``next_before`` is the ``before`` value of the next (older) page, so new
records arriving meanwhile never shift a page.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .api.common import json_response, query_int
from .appkeys import DB
from .auth import require
from .errors import BadRequest

MAX_LIMIT = 1000


def audit_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return one audit record as the API serves it."""
    target = row["target"] or ""
    actor = None
    if row["actor"] is not None:
        actor = {"name": row["actor"], "department": row["department"], "role": row["role"]}
    return {
        "id": row["id"],
        "at": row["at"],
        "actor": actor,
        "remote": row["remote"],
        "action": row["action"],
        "target": row["target"],
        "incident": target.split("#", 1)[0].split("/", 1)[0] or None,
        "detail": json.loads(row["detail"]) if row["detail"] else None,
    }


def _filters(request: web.Request) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for name in request.query:
        if name not in ("action", "incident", "actor", "before", "limit"):
            raise BadRequest(f"unknown query parameter '{name}'", code="invalid_query", field=name)
    if action := request.query.get("action"):
        if action.endswith("*"):
            # substr, not LIKE: '_' in an action name would be a LIKE wildcard.
            where.append("substr(action, 1, ?) = ?")
            params.extend([len(action) - 1, action[:-1]])
        else:
            where.append("action = ?")
            params.append(action)
    if incident := request.query.get("incident"):
        where.append("(target = ? OR substr(target, 1, ?) = ? OR substr(target, 1, ?) = ?)")
        params.extend(
            [incident, len(incident) + 1, incident + "#", len(incident) + 1, incident + "/"]
        )
    if actor := request.query.get("actor"):
        where.append("actor = ?")
        params.append(actor)
    before = query_int(request, "before", 0, 0, 2**62)
    if before:
        where.append("id < ?")
        params.append(before)
    return where, params


async def list_audit(request: web.Request) -> web.Response:
    await require(request, "admin")
    where, params = _filters(request)
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    clause = " WHERE " + " AND ".join(where) if where else ""

    def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [audit_dict(row) for row in rows]

    records = await request.app[DB].read(job)
    next_before = records[-1]["id"] if len(records) == limit else None
    return json_response({"audit": records, "next_before": next_before})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
