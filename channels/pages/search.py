"""Serve ``/search?q=``: the search page, rendered on the server, zh-CN or ``?lang=en``.

It runs the same query as ``GET /api/search`` (``broadcaster.search.service``) and
renders through the pages' base template, so it looks like the rest of the
site and works with JavaScript off. Snippets come from ``run_search``
already escaped, with matches in ``<mark>``, and are the only markup passed
through. Errors follow the pages' rule: an HTML page for browsers
(``Accept: text/html``), the contract's JSON error for other clients. Needs
``channels.pages.serve`` (templates, static assets, the language
rules), so it must be listed after it in ``BUILTIN_CHANNELS``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from broadcaster.appkeys import DB, STORE
from broadcaster.areas import matching_areas
from broadcaster.errors import BadRequest
from broadcaster.search.query import DEFAULT_LIMIT, clean_query, run_search
from broadcaster.search.service import MAX_QUERY

from .. import i18n
from .render import PageError, context, html_errors, render_page
from .view import incident_path

STRINGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "heading": "搜索通报",
        "label": "输入关键词（支持中文任意字词、英文单词）",
        "button": "搜索",
        "count": "找到 {n} 条相关通报",
        "none": "没有找到相关通报。",
        "within": "仅在此事件中搜索：",
        "everywhere": "搜索全部事件",
        "too_long": f"关键词过长，请不超过 {MAX_QUERY} 个字。",
    },
    "en": {
        "heading": "Search bulletins",
        "label": "Words to find (any Chinese characters, English words)",
        "button": "Search",
        "count": "{n} matching bulletins",
        "none": "Nothing matches.",
        "within": "Searching only in:",
        "everywhere": "Search all incidents",
        "too_long": f"The search text is too long: at most {MAX_QUERY} characters.",
    },
}


async def search_page(request: web.Request) -> web.Response:
    ctx = context(request)
    strings = STRINGS[ctx.lang]
    q = clean_query(request.query.get("q", ""))
    incident_id = request.query.get("incident") or None
    incident: dict[str, Any] | None = None
    if incident_id is not None:
        found = await request.app[STORE].incident(incident_id)
        if found is None:
            raise PageError(404, "not_found", request.path)
        incident = {**found, "href": ctx.link(incident_path(found["id"]))}
    problem = strings["too_long"] if len(q) > MAX_QUERY else None
    if problem and "text/html" not in request.headers.get("Accept", ""):
        raise BadRequest(f"'q' is longer than {MAX_QUERY} characters", code="query_too_long")
    rows: list[dict[str, Any]] = []
    areas: list[dict[str, str]] = []
    if q and problem is None:
        rows = await request.app[DB].read(
            lambda c: run_search(c, q, incident_id, DEFAULT_LIMIT * 2)
        )
        if incident_id is None:
            matched = await request.app[DB].read(lambda c: matching_areas(c, q))
            areas = [{**a, "href": ctx.link(f"/areas/{a['code']}")} for a in matched]
    results = [
        {
            **row,
            "href": ctx.link(f"{incident_path(row['incident'])}/entries/{row['seq']}"),
            "snippet": Markup(row["snippet"]),  # escaped by run_search, <mark> only
            "when": i18n.fmt(row["posted_at"], ctx.lang),
            "corrections": [
                {
                    "seq": seq,
                    "href": ctx.link(f"{incident_path(row['incident'])}/entries/{seq}"),
                }
                for seq in row["corrected_by"]
            ],
        }
        for row in rows
    ]
    return render_page(
        request,
        "search.html",
        ctx,
        status=400 if problem else 200,
        s=strings,
        q=q,
        max_query=MAX_QUERY,
        incident=incident,
        everywhere_href=ctx.link("/search", q=q or None),
        problem=problem,
        results=results,
        areas=areas,
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/search", html_errors(search_page))
