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

import functools
import gzip
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from broadcaster.appkeys import DB, NOT_FOUND_PAGE, SETTINGS, STORE
from broadcaster.errors import HTTPError
from broadcaster.store import pages as pages_data
from broadcaster.timeline.markdown import plain
from broadcaster.timeline.model import Entry

from .. import i18n
from .assets import ASSETS, accepts_gzip, setup_static
from .view import Ctx, blog_posting_ld, entry_view, incident_path, incident_view, json_ld, utc_now

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TEMPLATES = web.AppKey("templates", jinja2.Environment)
FILING = (
    ("icp_filing", "ICP备案："),
    ("police_filing", "公安备案："),
    ("site_code", "网站标识码："),
)
FEED_TYPES = (
    ("feed.atom", "application/atom+xml", "Atom"),
    ("feed.rss", "application/rss+xml", "RSS"),
    ("feed.json", "application/feed+json", "JSON Feed"),
)


class PageError(Exception):
    """Answer with an HTML error page (pages are for people, not the JSON API)."""

    def __init__(self, status: int, heading_key: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.heading_key = heading_key
        self.message = message


def context(request: web.Request) -> Ctx:
    settings = request.app[SETTINGS]
    lang = i18n.pick_lang(request.query.get("lang"), settings.lang)
    return Ctx(lang, settings.lang, settings.public_url, utc_now(), settings.figure_labels)


def query_seq(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise PageError(400, "bad_request", f"'{name}' must be a whole number (got {raw[:20]!r})")
    return int(raw)


def feed_links(ctx: Ctx, prefix: str) -> list[dict[str, str]]:
    return [
        {"href": f"{prefix}/{name}", "type": ctype, "label": label}
        for name, ctype, label in FEED_TYPES
    ]


def site_alert(
    incidents: list[dict[str, Any]], ctx: Ctx, exclude: str | None
) -> dict[str, Any] | None:
    """Return the one alert to show: the latest active extreme incident other than ``exclude``."""
    for incident in incidents:
        if (
            incident["status"] == "active"
            and incident["severity"] == "extreme"
            and incident["id"] != exclude
        ):
            view = incident_view(incident, ctx)
            return {**view, "href": ctx.link(view["path"])}
    return None


def other_lang_href(request: web.Request, ctx: Ctx) -> str:
    other = "zh-CN" if ctx.lang == "en" else "en"
    query = {k: v for k, v in request.query.items() if k != "lang"}
    if other != ctx.default_lang:
        query["lang"] = other
    return str(request.rel_url.with_query(query))


def render_page(
    request: web.Request, template: str, ctx: Ctx, status: int = 200, **values: Any
) -> web.Response:
    """Render ``template`` with the values every page shares; answer 304 on a matching ETag."""
    settings = request.app[SETTINGS]
    assets = request.app[ASSETS]
    shared = {
        "lang": ctx.lang,
        "t": ctx.t,
        "cl": ctx.content_lang,
        "css": Markup(assets.css),
        "site_name": settings.site_name,
        "department": settings.department,
        "home": ctx.link("/"),
        "other_lang_href": other_lang_href(request, ctx),
        "public_url": settings.public_url,
        "alert": None,
        "verify_href": None,
        "filing": [
            (label, getattr(settings, name))
            for name, label in FILING
            if getattr(settings, name, None)
        ],
    }
    html = request.app[TEMPLATES].get_template(template).render({**shared, **values})
    body = html.encode("utf-8")
    packed = accepts_gzip(request)
    # The gzipped bytes are another representation, so they get another strong ETag.
    tag = hashlib.sha256(body).hexdigest()[:32] + ("-gz" if packed else "")
    headers = {
        "ETag": f'"{tag}"',
        "Cache-Control": "no-cache",
        "Content-Language": ctx.lang,
        "Content-Security-Policy": assets.csp,
        "Vary": "Accept-Encoding",
    }
    if status == 200 and request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    if packed:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body, 6, mtime=0)
    return web.Response(
        body=body, status=status, headers=headers, content_type="text/html", charset="utf-8"
    )


def html_errors(handler: Handler) -> Handler:
    """Wrap a page handler so that a ``PageError`` becomes an HTML error page.

    Only for clients that accept HTML (browsers); others get the JSON error
    every 4xx/5xx carries under the contract.

    A decorator rather than an app middleware, so the API and feeds do not pay
    for one more layer on every request.
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as exc:
            if "text/html" not in request.headers.get("Accept", ""):
                # Scripts and API clients get the contract's JSON error.
                error = HTTPError(exc.message, code=exc.heading_key)
                error.status = exc.status
                raise error from None
            if exc.status == 404:
                return await not_found(request)
            ctx = context(request)
            return render_page(
                request,
                "error.html",
                ctx,
                status=exc.status,
                heading=ctx.t(exc.heading_key),
                message=exc.message,
                active=[],
            )

    return wrapper


async def not_found(request: web.Request) -> web.Response:
    """Answer 404 with a way on: what was asked for, the active incidents and search."""
    ctx = context(request)
    incidents = await request.app[STORE].incidents()
    active = [r for r in incident_rows(incidents, ctx) if r["status"] == "active"]
    active.sort(key=lambda r: r["level"])
    return render_page(
        request,
        "error.html",
        ctx,
        status=404,
        heading=ctx.t("not_found"),
        message=ctx.t("not_found_help"),
        asked=request.path,
        active=active[:10],
        alert=site_alert(incidents, ctx, None),
    )


def incident_rows(incidents: list[dict[str, Any]], ctx: Ctx) -> list[dict[str, Any]]:
    rows = []
    for incident in incidents:
        view = incident_view(incident, ctx)
        rows.append({**view, "href": ctx.link(view["path"])})
    return rows


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
    from . import console as pages_console
    from . import live as pages_live

    setup_static(app)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    app[NOT_FOUND_PAGE] = not_found
    app.router.add_get("/", html_errors(index))
    app.router.add_get("/incidents/{incident}", html_errors(pages_live.live_page))
    app.router.add_get("/incidents/{incident}/entries/{seq}", html_errors(entry_page))
    app.router.add_post("/incidents/{incident}/questions", html_errors(pages_live.ask_form))
    pages_console.setup(app)
