"""Keep track of update promises: record each interval change, count overdue incidents.

The interval an incident was created with is not part of its timeline, so a
publisher hook records, inside the append that changes the interval, the
value it replaces (``interval_changes``): that is what lets "promises kept vs
missed" (``broadcaster.accountability.metrics_api``) judge the windows
before the change.

The ``broadcaster_incidents_overdue`` gauge of ``/metrics`` is recounted every
``GAUGE_PERIOD`` seconds by a background task (one cheap indexed query over
active incidents), not on every scrape: ``/metrics`` stays fast and a
scrape never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from ..appkeys import DB, METRICS, PUBLISHER
from ..background import background
from ..clock import now, parse_ts
from ..store import timeliness as timeliness_store
from ..store.timeline import incident_dict
from ..timeline.model import Entry

log = logging.getLogger(__name__)
GAUGE_PERIOD = 15.0


def record_interval_change(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
    """Remember the interval an entry replaces (``incident`` is the state before it)."""
    if entry.record.get("update_interval_minutes") is not None:
        before = incident["update_interval_minutes"]
        timeliness_store.record_interval_change(conn, entry.incident, entry.seq, before)


def count_overdue(conn: Any) -> int:
    """Count active incidents whose promised update is past due now."""
    moment = now()
    rows = timeliness_store.promising_incidents(conn)
    dues = (incident_dict(row)["next_update_due"] for row in rows)
    return sum(1 for due in dues if due and parse_ts(due) < moment)


async def refresh_overdue(app: web.Application) -> int:
    """Recount overdue incidents into the gauge and return the count."""
    count = await app[DB].read(count_overdue)
    app[METRICS].overdue.set(count)
    return count


async def _gauge_loop(app: web.Application) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            try:
                await refresh_overdue(app)
            except Exception:  # a failed count must not stop later ones
                log.exception("counting overdue incidents failed")
            await asyncio.sleep(GAUGE_PERIOD)

    async with background(loop(), "overdue-gauge"):
        yield


def setup(app: web.Application) -> None:
    app[PUBLISHER].hooks.append(record_interval_change)
    app.cleanup_ctx.append(_gauge_loop)
