"""Render a page: the context, the templates, the shared frame, and HTML error pages.

Every page module (``serve``, ``live``, ``console``, ``search``, ``areas``)
renders through ``render_page``, which fills what every page shares (language,
inlined stylesheet, site and filing details) and answers 304 on a matching
``ETag``. Handlers raise ``PageError``; ``html_errors`` turns it into an HTML
error page for browsers and into the contract's JSON error for scripts.
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

from broadcaster.appkeys import SETTINGS, STORE
from broadcaster.errors import HTTPError

from .. import i18n
from .assets import ASSETS, accepts_gzip
from .view import Ctx, incident_view, utc_now

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


def setup_templates(app: web.Application) -> None:
    """Load the templates beside this module (autoescaped; an unknown name is an error)."""
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
