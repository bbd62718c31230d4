"""Serve the public HTML pages: the index, each incident's live page, each entry's page.

Pages are rendered on the server in full (readable with JavaScript off, by
text browsers and by search engines) through Jinja2 with autoescaping on;
entry HTML is already sanitised by ``broadcaster.timeline.markdown`` and is the only
markup passed through. Every page carries an ``ETag`` of its own bytes and
``Cache-Control: no-cache``: a reader re-checking an unchanged page gets a
304, and a correction or redaction (which changes the bytes) is never hidden
by a cache. Rendering is per request; what is saved is the network, which is
what readers in an emergency lack.

The language is ``?lang=en`` or ``?lang=zh-CN``, else ``BROADCASTER_LANG``;
links keep it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcaster.appkeys import DB, NOT_FOUND_PAGE, SETTINGS, STORE
from broadcaster.store import pages as pages_data
from broadcaster.timeline.markdown import plain
from broadcaster.timeline.model import Entry

from . import console, live
from .assets import ASSETS, setup_static
from .render import (
    PageError,
    context,
    feed_links,
    html_errors,
    incident_rows,
    not_found,
    render_page,
    setup_templates,
    site_alert,
)
from .view import Ctx, blog_posting_ld, entry_view, incident_path, incident_view, json_ld


async def index(request: web.Request) -> web.Response:
    ctx = context(request)
    incidents = await request.app[STORE].incidents()
    rows = incident_rows(incidents, ctx)
    active = [r for r in rows if r["status"] == "active"]
    # Stable sorts: newest update first, then most severe first.
    active.sort(key=lambda r: r["last_iso"] or r["started_iso"], reverse=True)
    active.sort(key=lambda r: r["level"])
    resolved = [r for r in rows if r["status"] == "resolved"]
    resolved.sort(key=lambda r: r["last_iso"] or r["started_iso"], reverse=True)
    resolved = resolved[:10]
    # index.js counts listed incidents whose head seq grows past what this page shows.
    heads = {r["id"]: r["entries"] for r in active + resolved}
    return render_page(
        request,
        "index.html",
        ctx,
        active=active,
        resolved=resolved,
        feeds=feed_links(ctx, ""),
        index_cfg=json_ld({"lang": ctx.lang, "heads": heads}),
        index_js=request.app[ASSETS].url("index.js"),
        alert=site_alert(incidents, ctx, None),
    )


async def entry_page(request: web.Request) -> web.Response:
    ctx = context(request)
    incident_id = request.match_info["incident"]
    raw = request.match_info["seq"]
    incident = await request.app[STORE].incident(incident_id)
    if incident is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise PageError(404, "not_found", request.path)
    seq = int(raw)

    def job(conn: Any) -> tuple[list[Entry], pages_data.Facts]:
        return pages_data.neighbours(conn, incident_id, seq), pages_data.timeline_facts(
            conn, incident_id, 0
        )

    around, facts = await request.app[DB].read(job)
    found = [e for e in around if e.seq == seq]
    if not found:
        raise PageError(404, "not_found", request.path)
    view = entry_view(found[0], ctx, facts.corrected_by)
    for link in view["corrected_by"]:
        link["href"] = ctx.link(f"{incident_path(incident_id)}/entries/{link['seq']}")
    for name in ("corrects", "redacts"):
        if view[name]:
            view[name + "_href"] = ctx.link(f"{incident_path(incident_id)}/entries/{view[name]}")
    base = incident_path(incident_id)
    settings = request.app[SETTINGS]
    inc = incident_view(incident, ctx)
    return render_page(
        request,
        "entry.html",
        ctx,
        inc=inc,
        e=view,
        description=entry_description(view, ctx),
        title_text=entry_title(view, ctx),
        canonical=f"{settings.public_url}{base}/entries/{seq}",
        ld=blog_posting_ld(incident, view, ctx, settings.department),
        inc_href=ctx.link(base),
        prev_href=ctx.link(f"{base}/entries/{seq - 1}") if seq > 1 else None,
        next_href=ctx.link(f"{base}/entries/{seq + 1}") if around[-1].seq > seq else None,
        verify_href=ctx.link(base) + "#verify",
        cap_href=f"{base}/entries/{seq}/cap.xml",
        alert=site_alert(await request.app[STORE].incidents(), ctx, incident_id),
    )


def entry_title(view: dict[str, Any], ctx: Ctx) -> str:
    """Return an entry page's title text: corrected entries say so before the old words."""
    text = plain(view["title_text"], 80) if view["title_text"] else f"#{view['seq']}"
    return (ctx.t("corrected_mark") if view["corrected_by"] else "") + text


def entry_description(view: dict[str, Any], ctx: Ctx) -> str:
    """Return the description and share preview: a correction notice first, then the text."""
    text = plain(view["title_text"], 80) if view["title_text"] else f"#{view['seq']}"
    if not view["corrected_by"]:
        return text
    seqs = "、".join(str(c["seq"]) for c in view["corrected_by"])
    return ctx.t("corrected_desc", seqs=seqs) + " " + text


def setup(app: web.Application) -> None:
    setup_static(app)
    setup_templates(app)
    app[NOT_FOUND_PAGE] = not_found
    app.router.add_get("/", html_errors(index))
    app.router.add_get("/incidents/{incident}", html_errors(live.live_page))
    app.router.add_get("/incidents/{incident}/entries/{seq}", html_errors(entry_page))
    app.router.add_post("/incidents/{incident}/questions", html_errors(live.ask_form))
    console.setup(app)
