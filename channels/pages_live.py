"""Render an incident's live page: briefing on top, the timeline below, by cursor.

The timeline is paged by ``seq``, never by page number, so a link never
shifts as entries arrive: ``?before=SEQ`` (newest first, the default),
``?order=asc&after=SEQ`` (oldest first), ``?with=SEQ`` (the slice holding that
entry, for permalinks into the page), ``?key=1`` (key events only). Only the
slice at the live edge is updated by ``live.js``; other slices are history.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from broadcaster.appkeys import DB, SETTINGS, STORE
from broadcaster.markdown import plain, render
from broadcaster.store import pages as pages_data

from . import i18n
from .feed_render import html_to_text
from .pages import PageError, context, feed_links, query_seq, render_page, site_alert
from .pages_static import ASSETS
from .pages_view import Ctx, entry_view, figures_view, incident_view, json_ld, live_blog_ld

PAGE = 30
SUMMARY_HEAD = 200
JS_LABELS = (
    "new_entries", "reconnecting", "corrected_at", "see_correction", "corrects", "redacts",
    "approved_by", "pause", "resume", "overdue", "copy_link", "copied", "verify_checking",
    "verify_ok", "verify_bad", "verify_sig", "verify_error", "verify_tampered", "status.active",
    "status.resolved",
)  # fmt: skip


def split_summary(summary: str) -> tuple[str, str]:
    """Split markdown at a blank line after about six lines, to fold the rest."""
    blocks = summary.strip().split("\n\n")
    head: list[str] = []
    while blocks and (not head or sum(len(b) for b in head) + len(blocks[0]) <= SUMMARY_HEAD):
        head.append(blocks.pop(0))
    return "\n\n".join(head), "\n\n".join(blocks)


def labels(ctx: Ctx) -> dict[str, Any]:
    """Return the strings live.js and verify.js print, in the page's language."""
    strings = {key: ctx.t(key) for key in JS_LABELS}
    kinds = {
        k: ctx.t("kind." + k) for k in ("update", "correction", "status", "redaction", "answer")
    }
    figures = {k[4:]: ctx.t(k) for k in i18n.STRINGS if k.startswith("fig.")}
    severity = {k[4:]: ctx.t(k) for k in i18n.STRINGS if k.startswith("sev.")}
    return {"s": strings, "kinds": kinds, "figs": figures, "sev": severity}


async def live_page(request: web.Request) -> web.Response:
    ctx = context(request)
    incident_id = request.match_info["incident"]
    incident = await request.app[STORE].incident(incident_id)
    if incident is None:
        raise PageError(404, "not_found", request.path)
    asc = request.query.get("order") == "asc"
    with_seq = query_seq(request, "with")
    key_only = request.query.get("key") == "1" and with_seq is None
    head = incident["head"]["seq"]
    if with_seq is not None:
        cursor: int | None = (
            max(0, with_seq - PAGE // 2) if asc else min(head, with_seq + PAGE // 2 - 1) + 1
        )
    else:
        cursor = query_seq(request, "after" if asc else "before")

    def job(conn: Any) -> tuple[pages_data.Slice, pages_data.Facts]:
        piece = pages_data.timeline_slice(
            conn,
            incident_id,
            head,
            newest_first=not asc,
            cursor=cursor,
            key_only=key_only,
            limit=PAGE,
        )
        return piece, pages_data.timeline_facts(conn, incident_id)

    piece, facts = await request.app[DB].read(job)
    shown = {e.seq for e in piece.entries}
    entries = [entry_view(e, ctx, facts.corrected_by, shown) for e in piece.entries]
    days = {e["day"] for e in entries}
    previous = None
    for view in entries:
        view["day_break"] = len(days) > 1 and view["day"] != previous
        previous = view["day"]
    inc = incident_view(incident, ctx)
    if incident.get("summary"):
        first, rest = split_summary(incident["summary"])
        inc["summary_html"] = Markup(render(first))
        inc["summary_more"] = Markup(render(rest)) if rest.strip() else None
    else:
        inc["summary_more"] = None
    path = inc["path"]
    newest_first = piece.entries[::-1] if asc else piece.entries
    settings = request.app[SETTINGS]
    assets = request.app[ASSETS]
    at_edge = not key_only and (not piece.has_newer if asc else cursor is None or not piece.entries
                                or piece.entries[0].seq >= head)  # fmt: skip
    live = {
        "id": incident_id,
        "head": head,
        "live": at_edge,
        "asc": asc,
        "lang": ctx.lang,
        "base": path,
        "q": "?lang=en" if ctx.lang != ctx.default_lang and ctx.lang == "en" else "",
        "due": incident.get("next_update_due"),
        "interval": incident.get("update_interval_minutes"),
        "status": incident["status"],
        "severity": incident["severity"],
        "l": labels(ctx),
    }
    return render_page(
        request,
        "incident.html",
        ctx,
        inc=inc,
        entries=entries,
        figures=figures_view(facts, ctx, incident_id),
        key_events=[key_event(e, ctx, shown, path) for e in facts.key_events],
        asc=asc,
        key_only=key_only,
        order_links={"desc": ctx.link(path), "asc": ctx.link(path, order="asc")},
        key_link=ctx.link(path, order="asc" if asc else None, key=None if key_only else 1),
        pager=pager(piece, ctx, path, asc, cursor, key_only),
        refresh_href=ctx.link(path),
        feeds=feed_links(ctx, path),
        cap_href=f"{path}/cap.xml",
        sms_sender=settings.sms_sender,
        live=json_ld(live),
        live_js=assets.url("live.js"),
        verify_js=assets.url("verify.js"),
        verify_href="#verify",
        ld=live_blog_ld(incident, newest_first, ctx, settings.department),
        description=plain(incident.get("summary") or incident["title"], 80),
        first_iso=i18n.iso(facts.first_posted_at) if facts.first_posted_at else None,
        first_text=i18n.fmt(facts.first_posted_at, ctx.lang) if facts.first_posted_at else None,
        alert=site_alert(await request.app[STORE].incidents(), ctx, incident_id),
    )


def key_event(entry: Any, ctx: Ctx, shown: set[int], path: str) -> dict[str, Any]:
    text = html_to_text(entry.html)
    line = f"{ctx.t('kind.' + entry.record['kind'])}：{text[:40]}" if text else f"#{entry.seq}"
    href = f"#e{entry.seq}" if entry.seq in shown else ctx.link(path, **{"with": entry.seq})
    return {
        "href": href if href.startswith("#") else f"{href}#e{entry.seq}",
        "iso": i18n.iso(entry.record["posted_at"]),
        "time_text": i18n.fmt_near(entry.record["posted_at"], ctx.lang, ctx.now),
        "line": line,
    }


def pager(
    piece: pages_data.Slice, ctx: Ctx, path: str, asc: bool, cursor: int | None, key_only: bool
) -> list[tuple[str, str]]:
    """Return (label, href) cursor links: earlier/later entries, and back to the live edge."""
    links: list[tuple[str, str]] = []
    key = 1 if key_only else None
    entries = piece.entries
    if not entries:
        return [(ctx.t("latest"), ctx.link(path))] if cursor is not None else []
    if asc:
        if piece.has_older:
            start = max(0, entries[0].seq - PAGE - 1)
            links.append((ctx.t("older"), ctx.link(path, order="asc", after=start, key=key)))
        if piece.has_newer:
            after = entries[-1].seq
            links.append((ctx.t("newer"), ctx.link(path, order="asc", after=after, key=key)))
        return links
    if cursor is not None and entries[0].seq < piece.head_seq:
        newer = entries[0].seq + PAGE + 1
        href = ctx.link(path, key=key) if newer > piece.head_seq or key_only else None
        links.append((ctx.t("newer"), href or ctx.link(path, before=newer)))
    if piece.has_older:
        links.append((ctx.t("older"), ctx.link(path, before=entries[-1].seq, key=key)))
    if cursor is not None:
        links.append((ctx.t("latest"), ctx.link(path, key=key)))
    return links
