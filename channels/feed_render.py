"""Render timeline entries as Atom, RSS 2.0 and JSON Feed 1.1 documents.

Pure functions: plain dicts shaped as in the public contract go in, bytes come out. No HTTP,
no database and no clock, so the same inputs always give the same bytes and the HTTP layer can
cache them and derive strong ETags from the head hash.

Trade-offs:

- Atom and RSS are built by feedgen, never by hand. feedgen cannot write RFC 6721 tombstones,
  so a redacted entry is added as an ordinary feedgen entry that carries only the redaction
  notice, and a feedgen entry extension turns that lxml element into ``at:deleted-entry``
  while feedgen builds the tree. Tombstones therefore keep their place in the timeline
  (newest first). The cost: this relies on feedgen handing its extensions the live, not yet
  attached element, which feedgen 1.0 does. RFC 6721 lets tombstones sit anywhere among the
  entries, but the informative RELAX NG schema of RFC 4287 only allows foreign elements before
  the first entry, so a strict RNG check flags them there.
- RSS 2.0 and JSON Feed have no tombstone. The redacted item stays, with the html that states
  the basis and nothing else: no figures, no body text.
- The renderers never read ``body``. Titles and text come from the sanitised ``html``, so
  markdown syntax never shows, and a redacted entry whose caller forgot to blank ``body``
  still cannot leak it.
- XML 1.0 has no escape for C0 controls (other than tab, LF, CR), U+FFFE/U+FFFF or lone
  surrogates, so they are stripped from every string. lxml escapes ``&``, ``<`` and ``>``
  (so ``]]>`` too) in text nodes, and no content goes into CDATA. JSON gets the same
  stripping: a lone surrogate cannot be encoded as UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from broadcaster.text import html_to_text, xml_safe
from broadcaster.timeline import notice_text
from channels.i18n import change_text

TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
TITLE_CHARS = 40
FIGURE_KEYS = ("deaths", "injured", "missing", "evacuated", "sheltered", "rescued", "affected")

KINDS = ("update", "correction", "status", "redaction", "answer")
_KIND_LABELS = {
    "zh-CN": dict(zip(KINDS, ("更新", "更正", "状态", "删除", "答复"), strict=True)),
    "en": dict(zip(KINDS, ("Update", "Correction", "Status", "Redaction", "Answer"), strict=True)),
}
_TARGET_LABELS = {
    "zh-CN": {"correction": "更正 #{}", "redaction": "删除 #{}"},
    "en": {"correction": "corrects #{}", "redaction": "redacts #{}"},
}
_STATUS_LABELS = {
    "zh-CN": {"active": "进行中", "resolved": "已结束"},
    "en": {"active": "active", "resolved": "resolved"},
}
_FIGURE_LABELS = {
    "zh-CN": dict(
        zip(FIGURE_KEYS, ("死亡", "受伤", "失联", "转移", "安置", "获救", "受灾"), strict=True)
    ),
    "en": {key: key.capitalize() for key in FIGURE_KEYS},
}
_FIGURES_CAPTION = {"zh-CN": "关键数字", "en": "Key figures"}
_WITHHELD = {"zh-CN": "内容已删除", "en": "Withheld"}
_CORRECTED = {
    "zh-CN": ("【已更正】", "本条已更正，见 {}。"),
    "en": ("[Corrected] ", "This update was corrected: see {}."),
}


@dataclass(frozen=True)
class FeedSource:
    """Describe one feed: where it lives and what it is called.

    ``self_path`` has no extension: each renderer appends ``.atom``, ``.rss`` or ``.json``.
    ``updated`` must be UTC-aware (feedgen refuses naive datetimes).
    """

    public_url: str
    title: str
    subtitle: str
    self_path: str
    html_path: str
    updated: datetime
    language: str = "zh-CN"
    author_name: str = ""


@dataclass(frozen=True)
class _Tombstone:
    ref: str
    when: str
    basis: str


@dataclass(frozen=True)
class _Item:
    url: str
    title: str
    content_html: str
    posted_at: str
    published: datetime
    author: str
    tombstone: _Tombstone | None
    entry: Mapping[str, Any]


def entry_url(public_url: str, incident_id: str, seq: int) -> str:
    """Return the entry's permanent URL, which is also its id in every feed."""
    return f"{public_url}/incidents/{quote(str(incident_id), safe='')}/entries/{int(seq)}"


def entry_label(entry: Mapping[str, Any], language: str = "zh-CN") -> str:
    """Return the kind label with its seq, e.g. ``更正 #5（更正 #3）`` or ``Update #4``."""
    lang = language if language in _KIND_LABELS else "zh-CN"
    kind = str(entry.get("kind") or "update")
    label = f"{_KIND_LABELS[lang].get(kind, kind)} #{entry['seq']}"
    target = entry.get("corrects") if kind == "correction" else entry.get("redacts")
    if kind in _TARGET_LABELS[lang] and target is not None:
        detail = _TARGET_LABELS[lang][kind].format(int(target))
    elif kind == "status" and entry.get("status"):
        detail = _STATUS_LABELS[lang].get(entry["status"], str(entry["status"]))
    else:
        return xml_safe(label)
    return xml_safe(f"{label} ({detail})" if lang == "en" else f"{label}（{detail}）")


def _figures_table(figures: Mapping[str, Any], language: str) -> str:
    labels = _FIGURE_LABELS.get(language, _FIGURE_LABELS["zh-CN"])
    known = [key for key in FIGURE_KEYS if key in figures]
    others = sorted(key for key in figures if key not in labels)
    rows = "".join(
        f'<tr><th scope="row">{escape(xml_safe(labels.get(key, key)))}</th>'
        f"<td>{escape(xml_safe(str(figures[key])))}</td></tr>"
        for key in known + others
    )
    caption = escape(_FIGURES_CAPTION.get(language, _FIGURES_CAPTION["zh-CN"]))
    return f'<table class="figures"><caption>{caption}</caption><tbody>{rows}</tbody></table>'


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed


def _tombstone(entry: Mapping[str, Any], ref: str, source: FeedSource) -> _Tombstone:
    redaction = entry.get("redaction") or {}
    when = redaction.get("posted_at")
    if when:
        _parse_time(when)
    else:
        when = source.updated.isoformat()
    basis = xml_safe(redaction.get("basis")) or html_to_text(entry.get("html"))
    return _Tombstone(ref=ref, when=xml_safe(when), basis=basis)


def _author(entry: Mapping[str, Any], language: str) -> str:
    author = entry.get("author") or {}
    name = xml_safe(author.get("name")).strip()
    department = xml_safe(author.get("department")).strip()
    if name and department:
        return f"{name} ({department})" if language == "en" else f"{name}（{department}）"
    return name or department


def _items(
    source: FeedSource,
    entries: Sequence[Mapping[str, Any]],
    incidents_by_id: Mapping[str, Mapping[str, Any]] | None,
) -> list[_Item]:
    items = []
    colon = ": " if source.language == "en" else "："
    lang = source.language if source.language in _KIND_LABELS else "zh-CN"
    for entry in entries:
        url = entry_url(source.public_url, entry["incident"], entry["seq"])
        html = xml_safe(entry.get("html"))
        redaction = entry.get("redaction") or {}
        if entry.get("redacted") and redaction.get("department"):
            # The notice in the feed's language and in Beijing time, never the withheld text.
            notice = notice_text(
                redaction["basis"], redaction["posted_at"], redaction["department"], lang
            )
            html = '<p class="redaction-notice">' + escape(xml_safe(notice)) + "</p>"
        if entry.get("kind") == "status" and not entry.get("redacted"):
            # A state change says what changed, even with no text of its own.
            html = "<p>" + escape(xml_safe(change_text(entry, lang))) + "</p>" + html
        text = _WITHHELD[lang] if entry.get("redacted") else html_to_text(html)
        if len(text) > TITLE_CHARS:
            text = text[:TITLE_CHARS].rstrip() + "…"
        title = entry_label(entry, source.language) + (colon + text if text else "")
        corrected_by = entry.get("corrected_by") or []
        if corrected_by:
            # A corrected item says so where readers look first, and links the correction.
            title = _CORRECTED[lang][0] + title
            links = "、".join(
                '<a href="'
                + escape(entry_url(source.public_url, entry["incident"], seq))
                + '">'
                + f"#{int(seq)}</a>"
                for seq in corrected_by
            )
            html += '<p class="corrected">' + _CORRECTED[lang][1].format(links) + "</p>"
        incident = (incidents_by_id or {}).get(entry["incident"])
        if incident is not None and incident.get("title"):
            title = f"{xml_safe(incident['title'])} · {title}"
        redacted = bool(entry.get("redacted"))
        if not redacted and entry.get("figures"):
            html += _figures_table(entry["figures"], source.language)
        items.append(
            _Item(
                url=url,
                title=title,
                content_html=html,
                posted_at=xml_safe(entry["posted_at"]),
                published=_parse_time(entry["posted_at"]),
                author=_author(entry, source.language),
                tombstone=_tombstone(entry, url, source) if redacted else None,
                entry=entry,
            )
        )
    return items


class _TombstoneFeed(BaseExtension):
    """Declare the ``at:`` prefix on the feed element."""

    def extend_ns(self) -> dict[str, str]:
        return {"at": TOMBSTONE_NS}


class _TombstoneEntry(BaseEntryExtension):
    """Rewrite a feedgen entry into an RFC 6721 ``at:deleted-entry`` when marked."""

    def __init__(self) -> None:
        self.tombstone: _Tombstone | None = None

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        if self.tombstone is None:
            return entry
        for child in list(entry):
            entry.remove(child)
        entry.attrib.clear()
        entry.tag = f"{{{TOMBSTONE_NS}}}deleted-entry"
        entry.set("ref", self.tombstone.ref)
        entry.set("when", self.tombstone.when)
        comment = etree.SubElement(entry, f"{{{TOMBSTONE_NS}}}comment")
        comment.text = self.tombstone.basis
        return entry


def _generator(source: FeedSource, fmt: str, mime: str) -> FeedGenerator:
    fg = FeedGenerator()
    title = xml_safe(source.title)
    fg.id(f"{source.public_url}{source.self_path}.{fmt}")
    fg.title(title)
    fg.subtitle(xml_safe(source.subtitle) or title)
    fg.language(source.language)
    fg.updated(source.updated)
    fg.generator("Broadcaster")
    if source.author_name:
        fg.author(name=xml_safe(source.author_name))
    # feedgen takes the RSS <link> from the last link added: the page, not the feed.
    fg.link(href=f"{source.public_url}{source.self_path}.{fmt}", rel="self", type=mime)
    fg.link(href=f"{source.public_url}{source.html_path}", rel="alternate", type="text/html")
    return fg


def render_atom(
    source: FeedSource,
    entries: Sequence[Mapping[str, Any]],
    incidents_by_id: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """Render entries (newest first) as an Atom feed; redacted ones become tombstones.

    Pass ``incidents_by_id`` for the all-incidents feed: item titles are then prefixed with
    their incident's title. A redacted entry should carry ``"redaction": {"seq",
    "posted_at", "basis"}``; without it the tombstone falls back to ``source.updated`` and
    the text of the entry's html.
    """
    fg = _generator(source, "atom", "application/atom+xml")
    fg.register_extension("tombstone", _TombstoneFeed, _TombstoneEntry, atom=True, rss=False)
    for item in _items(source, entries, incidents_by_id):
        fe = fg.add_entry(order="append")
        fe.id(item.url)
        fe.title(item.title)
        fe.link(href=item.url, rel="alternate", type="text/html")
        fe.content(item.content_html, type="html")
        fe.published(item.published)
        fe.updated(item.published)
        if item.author:
            fe.author(name=item.author)
        fe.tombstone.tombstone = item.tombstone
    return fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)


def render_rss(
    source: FeedSource,
    entries: Sequence[Mapping[str, Any]],
    incidents_by_id: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """Render entries (newest first) as RSS 2.0; a redacted item keeps only its notice."""
    fg = _generator(source, "rss", "application/rss+xml")
    fg.load_extension("dc", atom=False, rss=True)
    for item in _items(source, entries, incidents_by_id):
        fe = fg.add_entry(order="append")
        fe.guid(item.url, permalink=True)
        fe.title(item.title)
        fe.link(href=item.url, rel="alternate", type="text/html")
        fe.content(item.content_html, type="html")
        fe.published(item.published)
        if item.author:
            fe.dc.dc_creator(item.author)
    return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)


def render_json_feed(
    source: FeedSource,
    entries: Sequence[Mapping[str, Any]],
    incidents_by_id: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """Render entries (newest first) as JSON Feed 1.1 with a ``_broadcaster`` extension.

    A redacted item keeps its notice as ``content_html``, gets ``date_modified`` = the
    redaction time, and its extension object carries no figures.
    """
    title = xml_safe(source.title)
    feed: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": title,
        "home_page_url": f"{source.public_url}{source.html_path}",
        "feed_url": f"{source.public_url}{source.self_path}.json",
        "description": xml_safe(source.subtitle) or title,
        "language": source.language,
    }
    if source.author_name:
        feed["authors"] = [{"name": xml_safe(source.author_name)}]
    items = []
    for item in _items(source, entries, incidents_by_id):
        entry = item.entry
        redacted = item.tombstone is not None
        obj: dict[str, Any] = {
            "id": item.url,
            "url": item.url,
            "title": item.title,
            "content_html": item.content_html,
            "date_published": item.posted_at,
        }
        if item.tombstone is not None:
            obj["date_modified"] = item.tombstone.when
        if item.author:
            obj["authors"] = [{"name": item.author}]
        obj["_broadcaster"] = {
            "incident": xml_safe(str(entry["incident"])),
            "seq": entry["seq"],
            "kind": xml_safe(entry.get("kind")),
            "hash": xml_safe(entry.get("hash")),
            "figures": None if redacted else _clean_figures(entry.get("figures")),
            "corrects": entry.get("corrects"),
            "redacts": entry.get("redacts"),
            "status": entry.get("status"),
            "redacted": redacted,
        }
        items.append(obj)
    feed["items"] = items
    return json.dumps(feed, ensure_ascii=False, indent=2).encode("utf-8")


def _clean_figures(figures: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not figures:
        return None
    return {xml_safe(str(key)): value for key, value in figures.items()}
