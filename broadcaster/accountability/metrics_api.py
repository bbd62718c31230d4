"""Serve ``GET /api/incidents/{id}/metrics``: is the press office keeping its promises?

The figures come from ``broadcaster.accountability.timeliness`` (definitions
there) plus the public questions' counts. The intervals an incident had
before each change come from ``interval_changes``, which
``broadcaster.accountability.promises`` records as the changes are appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..api.common import incident_or_404, json_response
from ..appkeys import DB
from ..clock import now
from ..store import timeliness as timeliness_store
from .questions import question_stats
from .timeliness import timeliness


def timeline_facts(conn: Any, incident_id: str) -> dict[str, Any]:
    """Read what timeliness needs: slim records in seq order and the first interval."""
    return {
        "entries": timeliness_store.slim_entries(conn, incident_id),
        "initial": timeliness_store.first_interval(conn, incident_id),
        "questions": question_stats(conn, incident_id),
    }


def incident_metrics(incident: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """Combine timeliness and question figures into the answer of ``/metrics``."""
    entries = facts["entries"]
    changed = any(e["update_interval_minutes"] is not None for e in entries)
    kwargs = {"initial_interval": facts["initial"]} if changed else {}
    result = timeliness(incident, entries, now(), **kwargs)
    questions = facts["questions"]
    result["questions"] = questions
    result["questions_answered"] = questions["answered"]
    result["median_answer_seconds"] = questions["median_answer_seconds"]
    return result


async def get_metrics(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    facts = await request.app[DB].read(lambda c: timeline_facts(c, incident["id"]))
    return json_response(incident_metrics(incident, facts))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/incidents/{incident}/metrics", get_metrics)
