"""Render an incident's live page: briefing on top, the timeline below, by cursor.

The timeline is paged by ``seq``, never by page number, so a link never
shifts as entries arrive: ``?before=SEQ`` (newest first, the default),
``?order=asc&after=SEQ`` (oldest first), ``?with=SEQ`` (the slice holding that
entry, for permalinks into the page), ``?key=1`` (key events only). Only the
slice at the live edge is updated by ``live.js``; other slices are history.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiohttp import web
from markupsafe import Markup

from broadcaster import questions
from broadcaster.appkeys import DB, SETTINGS, STORE
from broadcaster.errors import HTTPError
from broadcaster.markdown import plain, render
from broadcaster.model import STATE_FIELDS
from broadcaster.store import areas as areas_store
from broadcaster.store import pages as pages_data
from broadcaster.store import questions as questions_store
from broadcaster.text import html_to_text

from . import i18n
from .area_pages import area_links
from .pages import PageError, context, feed_links, query_seq, render_page, site_alert
from .pages_static import ASSETS
from .pages_view import (
    Ctx,
    entry_view,
    figures_view,
    incident_path,
    incident_view,
    json_ld,
    live_blog_ld,
)

PAGE = 30
SUMMARY_HEAD = 200
CHANGE_LABELS = ("level", "status", "advice", "area", "summary", "summary_changed", "interval")
KEY_EVENTS = 8
KEY_LINE = 40
ANSWERS = 20
JS_LABELS = (
    "new_entries", "reconnecting", "corrected_at", "see_correction", "corrects", "redacts",
    "approved_by", "pause", "resume", "overdue", "copy_link", "copied", "verify_checking",
    "verify_ok", "verify_bad", "verify_sig", "verify_error", "verify_tampered", "status.active",
    "status.resolved", "pinned", "withheld", "corrected", "resolved_note", "see_answer",
    "asked_at", "refresh",
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
    figures |= {key: ctx.figure(key)["label"] for key in ctx.figure_labels}
    severity = {k[4:]: ctx.t(k) for k in i18n.STRINGS if k.startswith("sev.")}
    changes = {k: ctx.t(k) for k in CHANGE_LABELS}
    return {"s": strings, "kinds": kinds, "figs": figures, "sev": severity, "chg": changes}


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

    def job(conn: Any) -> tuple[pages_data.Slice, pages_data.Facts, list[Any], list[Any], Any]:
        piece = pages_data.timeline_slice(
            conn,
            incident_id,
            head,
            newest_first=not asc,
            cursor=cursor,
            key_only=key_only,
            limit=PAGE,
        )
        pinned = pages_data.entries_by_seq(conn, incident_id, incident["pinned"])
        answered = questions_store.listed(conn, incident_id, "answered")
        names = areas_store.names(conn, incident["areas"])
        return piece, pages_data.timeline_facts(conn, incident_id), pinned, answered, names

    piece, facts, pinned, answered, area_names = await request.app[DB].read(job)
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
        "pinned": incident["pinned"],
        "cl": ctx.default_lang if ctx.lang != ctx.default_lang else "",
        "l": labels(ctx),
    }
    return render_page(
        request,
        "incident.html",
        ctx,
        inc=inc,
        area_links=area_links(area_names, incident["areas"], ctx),
        entries=entries,
        figures=figures_view(facts, ctx, incident_id),
        key_events=key_events(pinned, facts.key_events, ctx, shown, path),
        answers=answers_view(answered, ctx, shown, path),
        asked=request.query.get("asked") == "1",
        ask_action=ctx.link(f"{path}/questions"),
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


def one_line(text: str, limit: int = KEY_LINE) -> str:
    """Return ``text`` cut to ``limit`` characters, with an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def key_event(
    entry: Any, ctx: Ctx, shown: Collection[int], path: str, pinned: bool = False
) -> dict[str, Any]:
    record = entry.record
    text = ctx.t("withheld") if entry.redacted else html_to_text(entry.html)
    if not text and record["kind"] == "status":
        text = i18n.change_text(record, ctx.lang)
    kind = ctx.t("kind." + record["kind"])
    href = f"#e{entry.seq}" if entry.seq in shown else ctx.link(path, **{"with": entry.seq})
    return {
        "seq": entry.seq,
        "href": href if href.startswith("#") else f"{href}#e{entry.seq}",
        "iso": i18n.iso(record["posted_at"]),
        "time_text": i18n.fmt_near(record["posted_at"], ctx.lang, ctx.now),
        "line": one_line(f"{kind}：{text}" if text else f"{kind} #{entry.seq}"),
        "pinned": pinned,
        "corrected": bool(entry.corrected_by),
    }


def pins_only(record: dict[str, Any]) -> bool:
    """Tell whether a status entry only re-pins key events (itself no key event)."""
    changed = [name for name in STATE_FIELDS if record.get(name) is not None]
    return record["kind"] == "status" and changed == ["pinned"]


def key_events(
    pinned: list[Any], chosen: list[Any], ctx: Ctx, shown: Collection[int], path: str
) -> list[dict[str, Any]]:
    """Return the pinned entries (the editors' order), then the latest ones chosen by rule."""
    seen = {e.seq for e in pinned}
    rest = [e for e in chosen if e.seq not in seen and not pins_only(e.record)]
    rest = rest[: max(0, KEY_EVENTS - len(pinned))]
    return [key_event(e, ctx, shown, path, True) for e in pinned] + [
        key_event(e, ctx, shown, path) for e in rest
    ]


def answers_view(
    rows: list[Any], ctx: Ctx, shown: Collection[int], path: str
) -> list[dict[str, Any]]:
    """Return answered questions, newest first, each linking to its answer."""
    views = []
    for row in sorted(rows, key=lambda r: r["handled_at"] or "", reverse=True)[:ANSWERS]:
        seq = row["answer_seq"]
        href = f"#e{seq}" if seq in shown else ctx.link(path, **{"with": seq}) + f"#e{seq}"
        asked = ctx.t("asked_at", time=i18n.fmt_near(row["asked_at"], ctx.lang, ctx.now))
        views.append({"text": row["text"], "seq": seq, "href": href, "asked": asked})
    return [v for v in views if v["text"]]


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


async def ask_form(request: web.Request) -> web.StreamResponse:
    """Take a question from the live page's form: back to the page, or the form with the problem.

    The same handler as ``POST /api/incidents/{id}/questions`` (rate limit,
    privacy review, queue) runs; only the answer is HTML for people.
    """
    ctx = context(request)
    incident = await request.app[STORE].incident(request.match_info["incident"])
    if incident is None:
        raise PageError(404, "not_found", request.path)
    path = incident_path(incident["id"])
    try:
        await questions.ask(request)
    except HTTPError as exc:
        key = "ask_err." + exc.code
        form = await request.post() if request.content_type.endswith("urlencoded") else {}
        return render_page(
            request,
            "ask.html",
            ctx,
            status=exc.status,
            inc=incident,
            problem=ctx.t(key if key in i18n.STRINGS else "ask_err.other"),
            text=str(form.get("text", "")),
            ask_action=ctx.link(f"{path}/questions"),
            back=ctx.link(path) + "#ask",
        )
    raise web.HTTPSeeOther(ctx.link(path, asked=1) + "#ask")
