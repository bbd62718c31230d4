"""Serve the audit log to admins: every write, acknowledgement and redaction, newest first.

``GET /api/audit?action=&incident=&actor=&before=&limit=`` (admin). Each
record says who (token name, department, role), when (server clock, UTC),
from where (the peer address aiohttp saw; behind a reverse proxy that is the
proxy unless it is configured to pass the client address), what (``action``,
``target``) and the details the writer recorded. The log itself is
append-only (triggers refuse UPDATE and DELETE, on SQLite and PostgreSQL).

Filters: ``action`` is exact (``entry.redact``) or a prefix ending in ``*``
(``draft.*``); ``incident`` matches the incident itself, its entries
(``ID#seq``) and its drafts (``ID/drafts/...``). Paging is by cursor:
``next_before`` is the ``before`` value of the next (older) page, so new
records arriving meanwhile never shift a page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..api.common import json_response, query_int
from ..appkeys import DB
from ..auth.tokens import require
from ..errors import BadRequest
from ..store import audit as audit_store

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


def _filters(request: web.Request) -> dict[str, Any]:
    for name in request.query:
        if name not in ("action", "incident", "actor", "before", "limit"):
            raise BadRequest(f"unknown query parameter '{name}'", code="invalid_query", field=name)
    filters: dict[str, Any] = {}
    if action := request.query.get("action"):
        if action.endswith("*"):
            filters["action_prefix"] = action[:-1]
        else:
            filters["action"] = action
    if incident := request.query.get("incident"):
        filters["incident"] = incident
    if actor := request.query.get("actor"):
        filters["actor"] = actor
    if before := query_int(request, "before", 0, 0, 2**62):
        filters["before"] = before
    return filters


async def list_audit(request: web.Request) -> web.Response:
    await require(request, "admin")
    filters = _filters(request)
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)

    def job(conn: Any) -> list[dict[str, Any]]:
        return [audit_dict(row) for row in audit_store.records(conn, **filters, limit=limit)]

    records = await request.app[DB].read(job)
    next_before = records[-1]["id"] if len(records) == limit else None
    return json_response({"audit": records, "next_before": next_before})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
