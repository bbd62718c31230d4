"""Share small request helpers among the API modules."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..appkeys import STORE
from ..errors import BadRequest, NotFound
from ..timeline.model import Entry


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def entry_created(entry: Entry) -> web.Response:
    """Answer 201 with the appended entry and where it lives."""
    return web.Response(
        text=entry.to_json(),
        status=201,
        content_type="application/json",
        headers={"Location": f"/api/incidents/{entry.incident}/entries/{entry.seq}"},
    )


def remote_of(request: web.Request) -> str | None:
    return request.remote


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"query parameter '{name}' must be an integer", code="invalid_query", field=name
        ) from None
    if not low <= value <= high:
        raise BadRequest(
            f"query parameter '{name}' must be between {low} and {high}",
            code="invalid_query",
            field=name,
        )
    return value


async def incident_or_404(request: web.Request, incident_id: str | None = None) -> dict[str, Any]:
    incident_id = incident_id or request.match_info["incident"]
    store = request.app[STORE]
    incident = await store.incident(incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r}", code="incident_not_found")
    return incident


def seq_param(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound(f"no entry {raw!r}", code="entry_not_found")
    return int(raw)
