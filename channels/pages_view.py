"""Turn incidents and entries into what the templates print: strings, not logic.

Everything a template shows is decided here (labels, formatted times, links
that keep ``?lang=en``, correction links both ways), so the templates stay
markup and the JavaScript can be handed the same labels through one data
attribute. Times are absolute only: cached HTML cannot hold "5分钟前"; the
browser adds relative times.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from broadcaster.clock import parse_ts
from broadcaster.figures import CUMULATIVE, VOCABULARY
from broadcaster.markdown import render
from broadcaster.model import Entry
from broadcaster.store.pages import Facts
from broadcaster.text import html_to_text
from broadcaster.timeline import redaction_notice

from . import i18n
from .pages_chart import sparkline

_NOW_DO = ("现在应做", "公众应做", "What to do")


@dataclass(frozen=True)
class Ctx:
    """What every view needs: language, clock, base URL and the default language."""

    lang: str
    default_lang: str
    public_url: str
    now: datetime
    figure_labels: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def content_lang(self) -> Markup:
        """Return ` lang="…"` for officials' text when it is not in the page's language.

        Officials write in the site's language (``BROADCASTER_LANG``); an English
        page must not make screen readers read their Chinese with an English voice.
        """
        return (
            Markup(f' lang="{self.default_lang}"') if self.lang != self.default_lang else Markup()
        )

    def figure(self, key: str) -> dict[str, Any]:
        """Return a figure's label and, when it is not in the page's language, its lang."""
        return {
            "label": i18n.figure_label(key, self.lang, self.figure_labels),
            "label_lang": i18n.figure_lang(key, self.lang, self.figure_labels),
        }

    def link(self, path: str, **params: Any) -> str:
        """Return ``path`` with ``params`` (``None`` dropped) and ``lang`` kept if not default."""
        query = {k: v for k, v in params.items() if v is not None}
        if self.lang != self.default_lang:
            query["lang"] = self.lang
        return path + ("?" + urlencode(query) if query else "")

    def t(self, key: str, **values: object) -> str:
        return i18n.t(self.lang, key, **values)


def incident_path(incident_id: str) -> str:
    return "/incidents/" + quote(incident_id, safe="")


def json_ld(data: Mapping[str, Any]) -> Markup:
    """Return JSON for a ``<script type="application/ld+json">`` block that cannot close it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def minutes_between(later: datetime, earlier: datetime) -> int:
    return int((later - earlier).total_seconds() // 60)


def incident_view(incident: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Return the incident's header facts: tag, times, timeliness, summary."""
    lang = ctx.lang
    severity = incident["severity"]
    status_label = ctx.t("status." + incident["status"])
    last = incident.get("last_update_at")
    due = incident.get("next_update_due")
    overdue = 0
    if due and incident["status"] == "active":
        late = minutes_between(ctx.now, parse_ts(due))
        overdue = max(late, 1) if ctx.now > parse_ts(due) else 0
    summary = incident.get("summary") or ""
    now_do = incident.get("advice") or next(
        (line.strip() for line in summary.splitlines() if line.strip().startswith(_NOW_DO)), None
    )
    resolved = incident["status"] == "resolved"
    return {
        "id": incident["id"],
        "path": incident_path(incident["id"]),
        "title": incident["title"],
        "area": incident.get("area"),
        "code": incident["code"],
        "severity": severity,
        "level": i18n.SEVERITY_LEVEL.get(severity, 4),
        "tag": f"{i18n.severity_label(severity, lang)} · {status_label}",
        "status": incident["status"],
        "status_label": status_label,
        "started_iso": i18n.iso(incident["started_at"]),
        "started_text": i18n.fmt(incident["started_at"], lang),
        "last_iso": i18n.iso(last) if last else None,
        "last_text": i18n.fmt_near(last, lang, ctx.now) if last else None,
        "due_iso": i18n.iso(due) if due else None,
        "due_text": i18n.fmt_near(due, lang, ctx.now) if due else None,
        "overdue": overdue,
        "summary_html": Markup(render(summary)) if summary.strip() else None,
        # Advice is what to do *now*: an incident that is over gives none.
        "now_do": None if resolved else now_do,
        "resolved_note": ctx.t("resolved_note", time=i18n.fmt_near(last, lang, ctx.now))
        if resolved and last
        else None,
        "entries": incident["head"]["seq"],
    }


def entry_view(
    entry: Entry,
    ctx: Ctx,
    corrected_by: Mapping[int, Sequence[Mapping[str, Any]]],
    shown: Collection[int] = (),
) -> dict[str, Any]:
    """Return one entry as the timeline and the entry page print it.

    Links to other entries are in-page anchors when those entries are in
    ``shown`` (the seqs on this page), else links to the timeline slice
    holding them (``?with=seq#eseq``), so they work from any page.
    """
    record = entry.record
    lang = ctx.lang
    base = incident_path(entry.incident)
    html = entry.html
    if entry.redacted and entry.redaction:
        # The notice in the page's language and in Beijing time, not the API's text.
        r = entry.redaction
        html = redaction_notice(r["basis"], r["posted_at"], r["department"], lang)
    title_text = ctx.t("withheld") if entry.redacted else html_to_text(entry.html)
    kind = record["kind"]
    approved = record.get("approved_by") or {}
    figures = None if entry.redacted else record.get("figures")

    def href(seq: int | None) -> str | None:
        if seq is None:
            return None
        return f"#e{seq}" if seq in shown else ctx.link(base, **{"with": seq}) + f"#e{seq}"

    return {
        "seq": entry.seq,
        "kind": kind,
        "kind_label": ctx.t("kind." + kind) if "kind." + kind in i18n.STRINGS else kind,
        "iso": i18n.iso(record["posted_at"]),
        "time_text": i18n.fmt_near(record["posted_at"], lang, ctx.now),
        "full_time": i18n.fmt(record["posted_at"], lang, "weekday"),
        "day": i18n.fmt(record["posted_at"], lang, "day"),
        "event_time": i18n.fmt(record["event_time"], lang) if record.get("event_time") else None,
        "permalink": ctx.link(f"{base}/entries/{entry.seq}"),
        "in_timeline": ctx.link(base, **{"with": entry.seq}) + f"#e{entry.seq}",
        "author": (record.get("author") or {}).get("name", ""),
        "department": (record.get("author") or {}).get("department", ""),
        "approver": " ".join(filter(None, (approved.get("department"), approved.get("name")))),
        "html": Markup(html),
        "text": "" if entry.redacted else html_to_text(entry.html),
        "title_text": title_text,
        "redacted": entry.redacted,
        "status_label": ctx.t("status." + record["status"]) if record.get("status") else None,
        "figures": [
            {**ctx.figure(k), "value": i18n.number(v, lang)}
            for k, v in ordered_figures(figures or {})
        ],
        "changes": state_view(record, ctx) if kind == "status" else [],
        "corrects": record.get("corrects"),
        "corrects_href": href(record.get("corrects")),
        "redacts": record.get("redacts"),
        "redacts_href": href(record.get("redacts")),
        "corrected_by": [
            {
                "seq": c["seq"],
                "time": i18n.fmt_near(c["posted_at"], lang, ctx.now),
                "href": href(c["seq"]),
            }
            for c in corrected_by.get(entry.seq, ())
        ],
        "content_hash": record["content_hash"],
        "hash": entry.hash,
        "prev_hash": record["prev_hash"],
    }


def state_view(record: Mapping[str, Any], ctx: Ctx) -> list[dict[str, Any]]:
    """Return what a status entry changed as (label, value) rows for the page."""
    rows = []
    if record.get("severity"):
        rows.append(
            {
                "label": ctx.t("level"),
                "value": i18n.severity_label(record["severity"], ctx.lang),
                "official": False,
            }
        )
    if record.get("status"):
        rows.append(
            {
                "label": ctx.t("status"),
                "value": ctx.t("status." + record["status"]),
                "official": False,
            }
        )
    for name in ("advice", "area"):
        if record.get(name) is not None:
            rows.append({"label": ctx.t(name), "value": record[name] or "—", "official": True})
    if record.get("summary") is not None:
        rows.append(
            {"label": ctx.t("summary"), "value": ctx.t("summary_changed"), "official": False}
        )
    if record.get("update_interval_minutes"):
        rows.append(
            {
                "label": ctx.t("interval"),
                "value": ctx.t("minutes", n=record["update_interval_minutes"]),
                "official": False,
            }
        )
    if record.get("pinned") is not None:
        pinned = "、".join(f"#{seq}" for seq in record["pinned"]) or "—"
        rows.append({"label": ctx.t("key_events"), "value": pinned, "official": False})
    return rows


def ordered_figures(figures: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(k, figures[k]) for k in VOCABULARY if k in figures]
    return known + sorted((k, v) for k, v in figures.items() if k not in VOCABULARY)


def figures_view(facts: Facts, ctx: Ctx, incident_id: str) -> list[dict[str, Any]]:
    """Return each figure's latest value, change, history table and chart."""
    views = []
    for key, _ in ordered_figures({k: 0 for k in facts.figures}):
        history = facts.figures[key]
        latest = history[-1]
        delta = latest["value"] - history[-2]["value"] if len(history) > 1 else None
        corrected = key in CUMULATIVE and delta is not None and delta < 0
        views.append(
            {
                "key": key,
                **ctx.figure(key),
                "value": i18n.number(latest["value"], ctx.lang),
                "as_of": ctx.t("as_of", time=i18n.fmt_near(latest["posted_at"], ctx.lang, ctx.now)),
                "delta": None if not delta else ("+" if delta > 0 else "−") + f"{abs(delta):,}",
                "corrected_link": f"#e{latest['seq']}" if corrected else None,
                "chart": sparkline([point["value"] for point in history]),
                "history": [
                    {
                        "time": i18n.fmt_near(p["posted_at"], ctx.lang, ctx.now),
                        "iso": i18n.iso(p["posted_at"]),
                        "value": i18n.number(p["value"], ctx.lang),
                        "seq": p["seq"],
                    }
                    for p in reversed(history)
                ],
            }
        )
    return views


def live_blog_ld(
    incident: Mapping[str, Any], entries: Sequence[Entry], ctx: Ctx, department: str
) -> Markup:
    """Return schema.org ``LiveBlogPosting`` JSON-LD with the latest 10 updates."""
    url = ctx.public_url + incident_path(incident["id"])
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "headline": incident["title"],
        "url": url,
        "inLanguage": ctx.lang,
        "coverageStartTime": i18n.iso(incident["started_at"]),
        "datePublished": i18n.iso(incident["created_at"]),
        "dateModified": i18n.iso(incident.get("last_update_at") or incident["created_at"]),
        "publisher": {"@type": "GovernmentOrganization", "name": department},
        "liveBlogUpdate": [
            {
                "@type": "BlogPosting",
                "headline": (html_to_text(e.html)[:80] or f"#{e.seq}"),
                "url": f"{url}/entries/{e.seq}",
                "datePublished": i18n.iso(e.record["posted_at"]),
                "articleBody": html_to_text(e.html),
            }
            for e in entries[:10]
        ],
    }
    if incident["status"] == "resolved" and incident.get("last_update_at"):
        data["coverageEndTime"] = i18n.iso(incident["last_update_at"])
    return json_ld(data)


def blog_posting_ld(
    incident: Mapping[str, Any], view: Mapping[str, Any], ctx: Ctx, department: str
) -> Markup:
    """Return schema.org ``BlogPosting`` JSON-LD for one entry's page."""
    url = f"{ctx.public_url}{incident_path(incident['id'])}/entries/{view['seq']}"
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "BlogPosting",
        "headline": view["text"][:80] or f"{incident['title']} #{view['seq']}",
        "url": url,
        "datePublished": view["iso"],
        "inLanguage": ctx.lang,
        "articleBody": view["text"],
        "author": {"@type": "GovernmentOrganization", "name": view["department"] or department},
        "isPartOf": {
            "@type": "LiveBlogPosting",
            "headline": incident["title"],
            "url": ctx.public_url + incident_path(incident["id"]),
        },
    }
    if view["corrected_by"]:
        base = f"{ctx.public_url}{incident_path(incident['id'])}/entries/"
        data["correction"] = [base + str(c["seq"]) for c in view["corrected_by"]]
    return json_ld(data)


def utc_now() -> datetime:
    return datetime.now(UTC)
