"""Turn a search text into an FTS5 query, and matching rows into highlighted results.

Pure query-side half of ``broadcaster.search`` (which owns the indexes, the
hook and the HTTP endpoint): the pair tokens written to ``search_pairs`` and
the pair phrases queried from it are both made here, by the same rule, so
they cannot drift apart. See ``broadcaster.search`` for the ranking policy.
"""

from __future__ import annotations

import html
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_TERMS = 8
DEFAULT_LIMIT = 20
WINDOW = 1000
SNIPPET_CHARS = 60
_RUN = re.compile(r"[^\W_]+")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean_query(raw: str) -> str:
    """Return ``raw`` NFC-normalised (as entries are), controls as spaces, spaces collapsed.

    A NUL would end an FTS5 string early ("unterminated string"), and no
    indexed text holds a control character anyway.
    """
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", raw)).split())


def pairs(text: str) -> str:
    """Return the pair tokens of ``text``: each adjacent pair in a run, then its last char."""
    tokens: list[str] = []
    for run in _RUN.findall(text.lower()):
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        tokens.append(run[-1])
    return " ".join(tokens)


def _fts_string(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _pairs_query(run: str) -> str:
    """Return the pairs-index query for one run: a prefix for one char, else a phrase."""
    if len(run) == 1:
        return _fts_string(run) + "*"
    return _fts_string(" ".join(run[i : i + 2] for i in range(len(run) - 1)))


@dataclass(frozen=True)
class Plan:
    """How to answer a query: which index, its MATCH text, what to highlight and re-check."""

    table: str
    match: str
    shown: tuple[str, ...]
    recheck: tuple[str, ...] = ()


def plan_query(q: str) -> Plan | None:
    """Return the plan for ``q``, or None when no term can match anything.

    All terms of 3+ characters: the trigram index. Any shorter term: the pairs
    index for every term, a long term becoming the phrase of its pairs (the
    last-character token after each run keeps phrases from spanning runs). A
    long term with punctuation inside is matched there by its runs, then
    checked as a whole substring in Python (``recheck``).
    """
    terms = [t.lower() for t in q.split()[:MAX_TERMS]]
    if terms and all(len(t) >= 3 for t in terms):
        return Plan("search_text", " AND ".join(map(_fts_string, terms)), tuple(terms))
    parts: list[str] = []
    shown: list[str] = []
    recheck: list[str] = []
    for term in terms:
        runs = _RUN.findall(term)
        parts.extend(_pairs_query(run) for run in runs)
        if len(term) >= 3 and runs != [term]:
            recheck.append(term)
            shown.append(term)
        else:
            shown.extend(runs)
    if not parts:
        return None
    return Plan("search_pairs", " AND ".join(parts), tuple(shown), tuple(recheck))


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
    conn: sqlite3.Connection, q: str, incident: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Return the best ``limit`` matches for ``q`` (see the module docstring)."""
    plan = plan_query(q)
    if plan is None:
        return []
    scope = (
        " JOIN search_rows s ON s.id = f.rowid WHERE s.incident = :incident AND"
        if incident
        else " WHERE"
    )
    # bm25 over the WINDOW most recent matches only: FTS5 walks its doclists
    # backwards and stops, so a term found in half the corpus costs no more
    # than a rare one. Older matches rank below the window, never vanish.
    sql = (
        "SELECT r.incident, r.seq, r.posted_at, i.title, t.title AS indexed_title, t.text"
        f" FROM (SELECT f.rowid AS id, bm25({plan.table}, 0.5, 1.0) AS score"
        f" FROM {plan.table} f{scope} {plan.table} MATCH :match"
        " ORDER BY f.rowid DESC LIMIT :window) m"
        " JOIN search_rows r ON r.id = m.id JOIN search_text t ON t.rowid = m.id"
        " JOIN incidents i ON i.id = r.incident"
        " WHERE NOT EXISTS (SELECT 1 FROM redactions x"
        " WHERE x.incident = r.incident AND x.seq = r.seq)"
        " ORDER BY m.score, m.id DESC LIMIT :limit"
    )
    params = {"match": plan.match, "incident": incident, "window": WINDOW}
    params["limit"] = limit * 4 if plan.recheck else limit
    results = []
    for row in conn.execute(sql, params):
        if plan.recheck:
            haystack = (row["indexed_title"] + " " + row["text"]).lower()
            if not all(term in haystack for term in plan.recheck):
                continue
        results.append(
            {
                "incident": row["incident"],
                "seq": row["seq"],
                "title": row["title"],
                "snippet": snippet(row["text"], plan.shown),
                "posted_at": row["posted_at"],
                "url": f"/incidents/{row['incident']}/entries/{row['seq']}",
            }
        )
    return results[:limit]
