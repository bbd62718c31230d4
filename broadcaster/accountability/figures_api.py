"""Serve an incident's key figures and refuse cumulative figures quietly going down.

``GET /api/incidents/{id}/figures`` answers the current value of every figure
and its full history, one point per entry that carried it. The current value
is the one in the latest entry carrying the figure, so a ``correction`` that
lowers a number takes effect and the earlier, higher point stays visible in
the history. A redacted entry's figures are left out everywhere (current,
history and the decrease check): whatever was withheld no longer counts.

The append check ``refuse_quiet_decrease`` runs inside the append
transaction, against the figures as they stand at that moment, so two racing
posts cannot slip a decrease past it. The vocabulary and which figures are
cumulative live in ``broadcaster.accountability.figures``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from ..api.common import incident_or_404, json_response
from ..appkeys import DB, PUBLISHER
from ..errors import Unprocessable
from ..store import figures as figures_store
from ..timeline.model import NewEntry
from .figures import CUMULATIVE, VOCABULARY


def summarize(points: Iterable[tuple[int, str, Mapping[str, int]]]) -> dict[str, Any]:
    """Return ``{"current": {key: value}, "history": {key: [{seq, value, posted_at}]}}``."""
    history: dict[str, list[dict[str, Any]]] = {}
    for seq, posted_at, figures in points:
        for key, value in figures.items():
            history.setdefault(key, []).append({"seq": seq, "value": value, "posted_at": posted_at})
    order = {key: i for i, key in enumerate(VOCABULARY)}
    keys = sorted(history, key=lambda k: (order.get(k, len(order)), k))
    return {
        "current": {key: history[key][-1]["value"] for key in keys},
        "history": {key: history[key] for key in keys},
    }


def refuse_quiet_decrease(conn: Any, incident: Mapping[str, Any], new: NewEntry) -> None:
    """Refuse (422 ``figure_decrease``) a lower cumulative figure outside a correction."""
    for key in sorted(CUMULATIVE & set(new.figures or {})):
        value = (new.figures or {})[key]
        found = figures_store.current(conn, incident["id"], key)
        if found is None or value >= found[0]:
            continue
        if new.kind == "correction" and new.body.strip():
            continue
        raise Unprocessable(
            f"'{key}' would go down from {found[0]} (entry #{found[1]}) to {value}: a cumulative"
            " figure is only lowered by a correction whose body says why",
            code="figure_decrease",
            field=f"figures.{key}",
            current=found[0],
            seq=found[1],
        )


async def get_figures(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    points = await request.app[DB].read(lambda c: figures_store.points(c, incident["id"]))
    return json_response(
        {"incident": incident["id"], **summarize(points), "cumulative": sorted(CUMULATIVE)}
    )


def setup(app: web.Application) -> None:
    app[PUBLISHER].checks.append(refuse_quiet_decrease)
    app.router.add_get("/api/incidents/{incident}/figures", get_figures)
