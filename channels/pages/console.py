"""Serve the press office console and the markdown preview it uses.

The console page is a static shell (no data, no token): ``console.js`` signs
in with a bearer token kept in ``sessionStorage`` (gone when the tab closes,
never in ``localStorage``, never in a cookie, so there is no CSRF surface) and
talks to the JSON API. Without JavaScript it says so: posting needs a token.

``POST /api/preview`` renders with the exact function publication uses
(``normalize_text`` then ``markdown.render``), so what the editor previews is
byte for byte what the public will see. It needs the editor role so it is not
an anonymous rendering service.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcaster.accountability.figures import CUMULATIVE, VOCABULARY
from broadcaster.api.common import incident_or_404, json_response
from broadcaster.appkeys import SETTINGS
from broadcaster.auth.tokens import require
from broadcaster.timeline.markdown import render
from broadcaster.timeline.model import SEVERITIES, STATUSES
from broadcaster.timeline.rules import normalize_text
from broadcaster.web.fields import Field, check_object
from broadcaster.web.jsonbody import read_object

from .. import i18n
from ..sms.message import entry_message, measure
from .assets import ASSETS
from .render import context, render_page

PREVIEW_FIELDS = (
    Field("body", "text", required=True, nullable=False, max_len=20_000),
    Field("incident", "line", max_len=64),
    Field("kind", "line", choices=("update", "correction", "status")),
    Field("status", "line", choices=STATUSES),
    Field("severity", "line", choices=SEVERITIES),
    Field("advice", "line", max_len=200),
    Field("area", "line", max_len=200),
)


async def preview(request: web.Request) -> web.Response:
    """Render the body as publication will; with ``incident``, the exact SMS too.

    ``sms`` is the message each subscriber would receive if this were posted
    now with ``"sms": true``, built by the sender's own function, with its
    encoding, length, part count and whether it fits (a post that does not
    fit is refused with 422 ``sms_too_long``).
    """
    await require(request, "editor")
    fields = check_object(await read_object(request), PREVIEW_FIELDS)
    body = normalize_text(fields["body"])
    answer: dict[str, Any] = {"html": render(body)}
    if fields.get("incident"):
        incident = await incident_or_404(request, fields["incident"])
        settings = request.app[SETTINGS]
        record = {**fields, "kind": fields.get("kind") or "update"}
        seq = incident["head"]["seq"] + 1
        text = entry_message(settings, incident["title"], incident["id"], seq, record, body)
        answer["sms"] = measure(text, settings.sms_max_segments)
    return json_response(answer)


async def console(request: web.Request) -> web.Response:
    ctx = context(request)
    figures = [
        {"key": key, "label": i18n.figure_label(key, ctx.lang), "cumulative": key in CUMULATIVE}
        for key in VOCABULARY
    ]
    severities = [(s, i18n.severity_label(s, ctx.lang)) for s in i18n.SEVERITY_LEVEL]
    response = render_page(
        request,
        "console.html",
        ctx,
        figures=figures,
        severities=severities,
        L=lambda zh, en: en if ctx.lang == "en" else zh,
        console_js=request.app[ASSETS].url("console.js"),
        drafts_js=request.app[ASSETS].url("console-drafts.js"),
    )
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/console", console)
    app.router.add_post("/api/preview", preview)
