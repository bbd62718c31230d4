"""Turn a search text into terms, and matching entries into highlighted results.

Query-side half of ``broadcaster.search.service`` (which owns the hook, the purge and
the HTTP endpoint); the index itself and its queries are
``broadcaster.store.search``. See ``broadcaster.search.service`` for the ranking policy.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

from ..store import pages as pages_store
from ..store import search as search_store

MAX_TERMS = 8
DEFAULT_LIMIT = 20
SNIPPET_CHARS = 60
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean_query(raw: str) -> str:
    """Return ``raw`` NFC-normalised (as entries are), controls as spaces, spaces collapsed.

    A NUL would end an FTS5 string early ("unterminated string"), and no
    indexed text holds a control character anyway.
    """
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", raw)).split())


def _highlight(text: str, terms: tuple[str, ...]) -> str:
    """Escape ``text`` and wrap every occurrence of ``terms`` (any case) in ``<mark>``."""
    spans: list[tuple[int, int]] = []
    lowered = text.lower()
    for term in sorted(set(terms), key=len, reverse=True):
        start = lowered.find(term)
        while start >= 0:
            end = start + len(term)
            if all(end <= a or start >= b for a, b in spans):
                spans.append((start, end))
            start = lowered.find(term, end)
    out, at = [], 0
    for start, end in sorted(spans):
        out += [html.escape(text[at:start], quote=False), "<mark>",
                html.escape(text[start:end], quote=False), "</mark>"]  # fmt: skip
        at = end
    return "".join(out) + html.escape(text[at:], quote=False)


def _window(text: str, terms: tuple[str, ...]) -> tuple[int, int]:
    """Return the span of about SNIPPET_CHARS characters around the first match."""
    lowered = text.lower()
    first = min((i for i in (lowered.find(t) for t in terms) if i >= 0), default=0)
    start = max(0, first - SNIPPET_CHARS // 3)
    end = start + SNIPPET_CHARS
    for term in terms:  # never cut a match in two
        hit = lowered.find(term, max(0, end - len(term) + 1))
        if 0 <= hit < end:
            end = hit + len(term)
    return start, end


def snippet(text: str, terms: tuple[str, ...]) -> str:
    """Return an HTML snippet of ``text`` around its first match, matches in ``<mark>``."""
    start, end = _window(text, terms)
    body = _highlight(text[start:end], terms)
    return ("…" if start else "") + body + ("…" if end < len(text) else "")


def run_search(
    conn: Any, q: str, incident: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Return the best ``limit`` matches for ``q`` (see ``broadcaster.search.service``)."""
    terms = [t.lower() for t in q.split()[:MAX_TERMS]]
    hits, shown = search_store.find(conn, terms, incident, limit)
    corrected = pages_store.corrections_for(conn, [(hit.incident, hit.seq) for hit in hits])
    return [
        {
            "incident": hit.incident,
            "seq": hit.seq,
            "title": hit.title,
            "snippet": snippet(hit.text, shown),
            "posted_at": hit.posted_at,
            "url": f"/incidents/{hit.incident}/entries/{hit.seq}",
            "corrected_by": corrected.get((hit.incident, hit.seq), []),
        }
        for hit in hits
    ]
