"""Search every published entry: Chinese substrings and English words, ranked, highlighted.

The index (``broadcaster.store.search``) is kept by a publisher hook inside
each append's transaction, so an entry is findable exactly when it is
committed. It holds the entry's visible text and its incident's title, and
answers substrings of any length: on SQLite two FTS5 indexes (trigrams, and
character pairs for terms of 1 or 2 characters), on PostgreSQL pg_trgm plus
an integer array of character pairs (``broadcaster.store.search_sqlite`` and
``search_postgres`` say how).

Terms are separated by white space and all must match (AND). Ranking is BM25
(title weighs half the text) over the ``WINDOW`` most recent matches: FTS5
walks its doclists backwards and stops, and PostgreSQL walks its id index
backwards for common terms, so a term found in half of 100,000 entries costs
about as much as a rare one (bench/search.py); older matches beyond the window
are not ranked. Snippets are cut and highlighted in Python, escaped, matches
in ``<mark>``: with trigrams FTS5's ``snippet()`` counts a token per
character and often cuts a match in two.

Redaction: the hook that sees a ``redaction`` entry removes the redacted
entry from the index in that same transaction (``unindex``), and queries skip
any entry listed in ``redactions`` too, so withheld text is never found.
FTS5 only marks deleted postings until segments merge, so after a redaction a
background task merges both SQLite indexes step by step (``purge_step``, a
bounded amount of work per write job so appends interleave) until the
withheld text's postings are gone from the file as well; on PostgreSQL the
row is deleted outright, nothing needs merging, and the redaction's own
clean-up VACUUMs the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from .api.common import incident_or_404, json_response, query_int
from .appkeys import DB, PUBLISHER
from .areas import matching_areas
from .background import background
from .errors import BadRequest
from .model import Entry
from .search_query import DEFAULT_LIMIT, clean_query, run_search
from .store import search as search_store
from .store.contract import JobDatabase as Database
from .text import html_to_text

log = logging.getLogger(__name__)

MAX_QUERY = 200


def index_entry(conn: Any, title: str, entry: Entry) -> None:
    """Add a committed entry to the index (inside the caller's transaction)."""
    if entry.redacted:
        return
    text = html_to_text(entry.html)
    if not text.strip():
        return
    search_store.index(conn, entry.incident, entry.seq, entry.record["posted_at"], title, text)


def unindex(conn: Any, incident: str, seq: int) -> None:
    """Remove entry ``seq`` of ``incident`` from the index; a no-op if it is not there."""
    search_store.unindex(conn, incident, seq)


def search_hook(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
    """Index each new entry; a redaction also removes the entry it redacts."""
    if entry.record.get("kind") == "redaction" and entry.record.get("redacts"):
        unindex(conn, entry.incident, int(entry.record["redacts"]))
    index_entry(conn, incident["title"], entry)


def rebuild(conn: Any) -> int:
    """Index every entry once, for a database that predates the index; return the count."""
    from .store.timeline import read_entries

    if search_store.is_built(conn):
        return 0
    count = 0
    for incident_id, title in search_store.incident_titles(conn):
        for entry in read_entries(conn, incident_id):
            index_entry(conn, title, entry)
            count += 1
    search_store.mark_built(conn)
    return count


def read_query(request: web.Request) -> str:
    """Return the ``q`` parameter, refusing an empty or oversized one with 400."""
    q = clean_query(request.query.get("q", ""))
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
    answer: dict[str, Any] = {"query": q, "results": results}
    if incident is None:
        answer["areas"] = await request.app[DB].read(lambda c: matching_areas(c, q))
    return json_response(answer)


def purge_step(conn: Any) -> bool:
    """Clean up a bounded share of the index; return True while there was work to do."""
    return search_store.merge_step(conn)


class Purger:
    """Merge the indexes after a redaction, off the redaction's own transaction."""

    def __init__(self) -> None:
        self.wanted = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> None:
        """Ask for a purge; safe to call from the writer thread."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._want)

    def _want(self) -> None:
        self.idle.clear()
        self.wanted.set()

    async def run(self, db: Database) -> None:
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            try:
                while await db.write(purge_step):
                    pass
            except Exception:  # retried at the next redaction; queries are unaffected
                log.exception("merging the search index after a redaction failed")
            if not self.wanted.is_set():
                self.idle.set()


PURGER = web.AppKey("search_purger", Purger)


async def _index_tasks(app: web.Application) -> AsyncIterator[None]:
    await app[DB].write(rebuild)
    purger = app[PURGER]
    purger.loop = asyncio.get_running_loop()
    async with background(purger.run(app[DB]), "search-purger"):
        yield


def setup(app: web.Application) -> None:
    purger = app[PURGER] = Purger()

    def hook(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
        search_hook(conn, incident, entry)
        if entry.record.get("kind") == "redaction":
            purger.request()

    app[PUBLISHER].hooks.append(hook)
    app.cleanup_ctx.append(_index_tasks)
    app.router.add_get("/api/search", search)
