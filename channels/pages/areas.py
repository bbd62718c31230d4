"""Serve each area's page and feeds: ``/areas``, ``/areas/{code}``, ``/areas/{code}/feed.*``.

An area's incidents are those reaching it (``broadcaster.areas``: tagged with
it, with an area inside it or with one it lies in). Its feeds (Atom, RSS,
JSON Feed) hold the latest 50 entries of those incidents, newest first, and
live like the all-incidents feed: cached per version of every incident's head
(so a new entry anywhere re-renders at most once per area and format) with a
strong ``ETag``. The page lists the incidents and their latest entries, says
how to subscribe by SMS, and tells its reader when listed incidents move or a
new one appears (``index.js`` polling ``GET /api/areas/{code}``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from broadcaster.appkeys import DB, SETTINGS
from broadcaster.errors import NotFound
from broadcaster.store import area_entries
from broadcaster.store import areas as store
from broadcaster.store import pages as pages_data
from broadcaster.timeline.markdown import plain

from .. import i18n
from ..feeds.serve import FEEDS, GLOBAL_LIMIT, across_incidents
from .assets import ASSETS
from .render import PageError, context, feed_links, html_errors, incident_rows, render_page
from .view import Ctx, incident_path, json_ld

LATEST = 20


def area_path(code: str) -> str:
    return "/areas/" + code


def area_links(names: dict[str, str], codes: list[str], ctx: Ctx) -> list[dict[str, str]]:
    """Return the links an incident's areas show as (``code``, ``name``, ``href``)."""
    return [
        {"code": code, "name": names.get(code, code), "href": ctx.link(area_path(code))}
        for code in codes
    ]


async def area_page(request: web.Request) -> web.Response:
    ctx = context(request)
    code = request.match_info["code"].upper()

    def job(conn: Any) -> Any:
        area = store.get(conn, code)
        if area is None:
            return None
        parent = store.get(conn, area["parent"]) if area["parent"] else None
        incidents = pages_data.incidents_by_id(conn, store.incidents_in(conn, code))
        latest = area_entries.latest_entries_in(conn, code, LATEST)
        return area, parent, incidents, latest

    found = await request.app[DB].read(job)
    if found is None:
        raise PageError(404, "not_found", request.path)
    area, parent, incidents, latest = found
    rows = incident_rows(list(incidents.values()), ctx)
    rows.sort(key=lambda r: r["last_iso"] or r["started_iso"], reverse=True)
    rows.sort(key=lambda r: (r["status"] != "active", r["level"]))
    entries = []
    for entry in latest:
        incident = incidents.get(entry.incident)
        record = entry.record
        text = plain(entry.body, 80) if entry.body else ctx.t("kind." + record["kind"])
        entries.append(
            {
                "href": ctx.link(f"{incident_path(entry.incident)}/entries/{entry.seq}"),
                "inc_href": ctx.link(incident_path(entry.incident)),
                "inc_title": incident["title"] if incident else entry.incident,
                "iso": i18n.iso(record["posted_at"]),
                "time_text": i18n.fmt_near(record["posted_at"], ctx.lang, ctx.now),
                "text": text,
            }
        )
    settings = request.app[SETTINGS]
    base = area_path(area["code"])
    return render_page(
        request,
        "area.html",
        ctx,
        area={"code": area["code"], "name": area["name"], "aliases": json.loads(area["aliases"])},
        parent=(
            {"name": parent["name"], "href": ctx.link(area_path(parent["code"]))}
            if parent
            else None
        ),
        incidents=rows,
        latest=entries,
        feeds=feed_links(ctx, base),
        sms_sender=settings.sms_sender if settings.sms_gateway else None,
        areas_href=ctx.link("/areas"),
        index_cfg=json_ld(
            {
                "lang": ctx.lang,
                "heads": {r["id"]: r["entries"] for r in rows},
                "source": f"/api/areas/{area['code']}",
            }
        ),
        index_js=request.app[ASSETS].url("index.js"),
    )


async def areas_index(request: web.Request) -> web.Response:
    ctx = context(request)
    rows = await request.app[DB].read(store.all_areas)
    names = {row["code"]: row["name"] for row in rows}
    areas = [
        {
            "code": row["code"],
            "name": row["name"],
            "href": ctx.link(area_path(row["code"])),
            "parent": names.get(row["parent"] or ""),
        }
        for row in rows
    ]
    return render_page(request, "areas.html", ctx, areas=areas)


async def area_feed(request: web.Request) -> web.Response:
    code = request.match_info["code"].upper()
    area = await request.app[DB].read(lambda conn: store.get(conn, code))
    if area is None:
        raise NotFound(f"no area {code!r}", code="area_not_found")
    version = f"{await request.app[FEEDS].heads.signature()}\n{area['name']}"
    return await across_incidents(
        request,
        ("area", code),
        version,
        lambda conn: area_entries.latest_entries_in(conn, code, GLOBAL_LIMIT),
        title=f"{area['name']} · {request.app[SETTINGS].site_name}",
        html_path=area_path(code),
        self_path=f"{area_path(code)}/feed",
        etag_parts=("area", code, version),
    )


def setup(app: web.Application) -> None:
    """Add the area pages and feeds (after the feeds' and the pages' own ``setup``)."""
    fmt = "{fmt:atom|rss|json}"
    app.router.add_get("/areas", html_errors(areas_index))
    app.router.add_get("/areas/{code}", html_errors(area_page))
    app.router.add_get(f"/areas/{{code}}/feed.{fmt}", area_feed)
