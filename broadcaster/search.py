"""Search every published entry: Chinese substrings and English words, ranked, highlighted.

Two SQLite FTS5 indexes over the same rows, kept by a publisher hook inside
each append's transaction (so an entry is findable exactly when it is
committed):

- ``search_text`` (trigram tokenizer) stores the entry's visible text and its
  incident's title. Any query term of 3 or more characters is a substring
  match there, ranked by ``bm25``. Snippets are cut in Python from FTS5's
  ``highlight()``: with trigrams ``snippet()`` counts a token per character
  and often cuts a match in two at the end of its window.
- ``search_pairs`` (contentless, unicode61) holds every overlapping pair of
  letters/digits of the same text plus the last character of each run, so
  terms of 1 or 2 characters (``山洪``, ``雨``) are substring matches too.
  The trigram index cannot answer them, and SQLite 3.40's LIKE over a trigram
  table silently finds nothing for two CJK characters (six UTF-8 bytes pass
  its length test, no trigram matches), so the pairs index is not optional.

Terms are separated by white space and all must match (AND). Snippets are
HTML: the text is escaped and matches are wrapped in ``<mark>``.

Redaction: the hook that sees a ``redaction`` entry removes the redacted
entry from both indexes in that same transaction (``unindex``), and queries
also skip any entry listed in ``redactions``, so withheld text is never found
even if a redaction reached the database another way. FTS5 deletes leave
"delete" markers until segments merge, and SQLite keeps freed pages unless
``secure_delete`` is on: the withheld text leaves every public surface at
once, but forensic removal from the file is the store's concern.
"""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping
from typing import Any

import nh3
from aiohttp import web

from .api.common import incident_or_404, json_response, query_int
from .appkeys import DB, PUBLISHER
from .errors import BadRequest
from .model import Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_rows (
    id INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    posted_at TEXT NOT NULL,
    UNIQUE (incident, seq)
);
CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5(title, text, tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS search_pairs
    USING fts5(title, text, content='', tokenize='unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS search_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
MAX_QUERY = 200
MAX_TERMS = 8
DEFAULT_LIMIT = 20
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
_RUN = re.compile(r"[^\W_]+")
_MARKS = re.compile(f"[{MARK_OPEN}{MARK_CLOSE}]")
SNIPPET_CHARS = 60


def visible_text(entry_html: str) -> str:
    """Return the text a reader sees in ``entry_html``, without our snippet markers."""
    text = html.unescape(nh3.clean(entry_html, tags=set()))
    return _MARKS.sub(" ", " ".join(text.split()))


def pairs(text: str) -> str:
    """Return the pair tokens of ``text``: each adjacent pair in a run, then its last char."""
    tokens: list[str] = []
    for run in _RUN.findall(text.lower()):
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        tokens.append(run[-1])
    return " ".join(tokens)


def index_entry(conn: sqlite3.Connection, title: str, entry: Entry) -> None:
    """Add a committed entry to both indexes (inside the caller's transaction)."""
    if entry.redacted:
        return
    text = visible_text(entry.html)
    question = entry.record.get("question")
    if isinstance(question, dict) and question.get("text"):
        text = _MARKS.sub(" ", str(question["text"])) + " " + text
    title = _MARKS.sub(" ", title)
    if not text.strip():
        return
    row_id = conn.execute(
        "INSERT INTO search_rows (incident, seq, posted_at) VALUES (?, ?, ?)"
        " ON CONFLICT (incident, seq) DO NOTHING RETURNING id",
        (entry.incident, entry.seq, entry.record["posted_at"]),
    ).fetchone()
    if row_id is None:
        return
    conn.execute(
        "INSERT INTO search_text (rowid, title, text) VALUES (?, ?, ?)", (row_id[0], title, text)
    )
    conn.execute(
        "INSERT INTO search_pairs (rowid, title, text) VALUES (?, ?, ?)",
        (row_id[0], pairs(title), pairs(text)),
    )


def unindex(conn: sqlite3.Connection, incident: str, seq: int) -> None:
    """Remove entry ``seq`` of ``incident`` from both indexes; a no-op if it is not there."""
    row = conn.execute(
        "SELECT id FROM search_rows WHERE incident = ? AND seq = ?", (incident, seq)
    ).fetchone()
    if row is None:
        return
    stored = conn.execute(
        "SELECT title, text FROM search_text WHERE rowid = ?", (row[0],)
    ).fetchone()
    if stored is not None:
        # A contentless FTS5 table forgets a row only when told its exact tokens again.
        conn.execute(
            "INSERT INTO search_pairs (search_pairs, rowid, title, text)"
            " VALUES ('delete', ?, ?, ?)",
            (row[0], pairs(stored[0]), pairs(stored[1])),
        )
        conn.execute("DELETE FROM search_text WHERE rowid = ?", (row[0],))
    conn.execute("DELETE FROM search_rows WHERE id = ?", (row[0],))


def search_hook(conn: sqlite3.Connection, incident: Mapping[str, Any], entry: Entry) -> None:
    """Index each new entry; a redaction also removes the entry it redacts."""
    if entry.record.get("kind") == "redaction" and entry.record.get("redacts"):
        unindex(conn, entry.incident, int(entry.record["redacts"]))
    index_entry(conn, incident["title"], entry)


def rebuild(conn: sqlite3.Connection) -> int:
    """Index every entry once, for a database that predates the index; return the count."""
    from .sqlite_store import read_entries

    if conn.execute("SELECT 1 FROM search_state WHERE key = 'built'").fetchone():
        return 0
    count = 0
    for incident_id, title in conn.execute("SELECT id, title FROM incidents").fetchall():
        for entry in read_entries(conn, incident_id):
            index_entry(conn, title, entry)
            count += 1
    conn.execute("INSERT INTO search_state (key, value) VALUES ('built', '1')")
    return count


def _fts_string(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def parse_query(q: str) -> tuple[list[str], list[str], list[str]]:
    """Split ``q`` into trigram phrases, pair-index tokens and the terms to highlight."""
    long_terms: list[str] = []
    short_tokens: list[str] = []
    shown: list[str] = []
    for term in q.split()[:MAX_TERMS]:
        if len(term) >= 3:
            long_terms.append(_fts_string(term))
            shown.append(term)
            continue
        runs = _RUN.findall(term.lower())
        short_tokens.extend(_fts_string(r) + ("*" if len(r) == 1 else "") for r in runs)
        shown.extend(runs)
    return long_terms, short_tokens, shown


def _highlight(text: str, terms: list[str]) -> str:
    """Escape ``text`` (which may hold snippet markers) and wrap ``terms`` in ``<mark>``."""
    escaped = html.escape(text, quote=False)
    escaped = escaped.replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")
    # Mark short terms (the trigram index knows nothing of them) outside existing marks.
    parts = re.split(r"(<mark>.*?</mark>)", escaped)
    for term in sorted({html.escape(t, quote=False) for t in terms}, key=len, reverse=True):
        pattern = re.compile(re.escape(term), re.IGNORECASE)
        parts = [
            p if p.startswith("<mark>") else pattern.sub(lambda m: f"<mark>{m[0]}</mark>", p)
            for p in parts
        ]
    return "".join(parts)


def _window(text: str, terms: list[str]) -> str:
    """Return about SNIPPET_CHARS characters of ``text`` around its first match, marks whole."""
    first = text.find(MARK_OPEN)
    if first < 0:
        lowered = text.lower()
        first = min((i for i in (lowered.find(t.lower()) for t in terms) if i >= 0), default=0)
    start = max(0, first - SNIPPET_CHARS // 3)
    end = start + SNIPPET_CHARS
    opened = text.rfind(MARK_OPEN, start, end)
    if opened > text.rfind(MARK_CLOSE, start, end):  # never cut a match in two
        end = text.find(MARK_CLOSE, opened) + 1 or len(text)
    cut = text[start:end]
    return ("…" if start else "") + cut + ("…" if end < len(text) else "")


def run_search(
    conn: sqlite3.Connection, q: str, incident: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Return the best ``limit`` matches for ``q`` (see the module docstring)."""
    long_terms, short_tokens, shown = parse_query(q)
    if not long_terms and not short_tokens:
        return []
    where = ["r.incident = :incident"] if incident else []
    where.append(
        "NOT EXISTS (SELECT 1 FROM redactions x WHERE x.incident = r.incident AND x.seq = r.seq)"
    )
    params: dict[str, Any] = {"incident": incident, "limit": limit}
    if long_terms:
        params["long"] = " AND ".join(long_terms)
        if short_tokens:
            params["short"] = " AND ".join(short_tokens)
            where.append(
                "t.rowid IN (SELECT rowid FROM search_pairs WHERE search_pairs MATCH :short)"
            )
        sql = (
            "SELECT r.incident, r.seq, r.posted_at, i.title,"
            f" highlight(search_text, 1, '{MARK_OPEN}', '{MARK_CLOSE}') AS snip"
            " FROM search_text t JOIN search_rows r ON r.id = t.rowid"
            " JOIN incidents i ON i.id = r.incident"
            " WHERE search_text MATCH :long AND " + " AND ".join(where) +
            " ORDER BY bm25(search_text, 0.5, 1.0) LIMIT :limit"
        )  # fmt: skip
    else:
        params["short"] = " AND ".join(short_tokens)
        sql = (
            "SELECT r.incident, r.seq, r.posted_at, i.title, t.text AS snip"
            " FROM search_pairs p JOIN search_rows r ON r.id = p.rowid"
            " JOIN search_text t ON t.rowid = p.rowid JOIN incidents i ON i.id = r.incident"
            " WHERE search_pairs MATCH :short AND " + " AND ".join(where) +
            " ORDER BY bm25(search_pairs, 0.5, 1.0) LIMIT :limit"
        )  # fmt: skip
    results = []
    for row in conn.execute(sql, params).fetchall():
        results.append(
            {
                "incident": row["incident"],
                "seq": row["seq"],
                "title": row["title"],
                "snippet": _highlight(_window(row["snip"], shown), shown),
                "posted_at": row["posted_at"],
                "url": f"/incidents/{row['incident']}/entries/{row['seq']}",
            }
        )
    return results


def read_query(request: web.Request) -> str:
    """Return the ``q`` parameter, refusing an empty or oversized one with 400."""
    q = " ".join(request.query.get("q", "").split())
    if not q:
        raise BadRequest("give a search text in 'q'", code="query_required", field="q")
    if len(q) > MAX_QUERY:
        raise BadRequest(
            f"'q' is longer than {MAX_QUERY} characters", code="query_too_long", field="q"
        )
    return q


async def search(request: web.Request) -> web.Response:
    q = read_query(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, 100)
    incident = request.query.get("incident") or None
    if incident is not None:
        await incident_or_404(request, incident)
    results = await request.app[DB].read(lambda c: run_search(c, q, incident, limit))
    return json_response({"query": q, "results": results})


async def _build_index(app: web.Application) -> AsyncIterator[None]:
    await app[DB].write(rebuild)
    yield


def setup(app: web.Application) -> None:
    app[DB].add_schema(SCHEMA)
    app[PUBLISHER].hooks.append(search_hook)
    app.cleanup_ctx.append(_build_index)
    app.router.add_get("/api/search", search)
