"""Serve Atom, RSS and JSON Feed documents per incident and for all incidents.

Each document is rendered once per head and kept in memory under the key
(feed, head hash), so a new entry needs no invalidation: its head hash is a
new key, and the old document simply ages out of the LRU. The strong ``ETag``
is derived from the head hash(es), so it is stable across restarts and nodes.

Each render is also gzipped once, in the same worker thread, and both byte
strings are kept: a client that accepts gzip gets the compressed bytes with
their own strong ``ETag`` (the plain one with ``-gz``) and ``Vary:
Accept-Encoding``, and a request costs no compression, only a header check.
A feed holds at most ``FEED_BYTES`` of entry text (newest first, at least one
entry), so a few huge entries cannot make a document of tens of MiB that
every slow reader would hold a copy of.

Knowing the head must not cost a database read per request, so ``Heads``
keeps every incident's head in memory: this node's bus listener moves it the
moment an entry is published (here or, on Redis, on another node), and a read
of the ``incidents`` table refreshes it at most once per ``FRESH`` seconds, so
a missed bus message (Redis restart) costs at most that much staleness. Heads
only ever move forward (higher seq), so a slow refresh cannot undo a newer
bus update.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web

from broadcaster.appkeys import BUS, DB, SETTINGS
from broadcaster.background import background
from broadcaster.bus import listen_forever
from broadcaster.bus.message import BusMessage, EntryMessage
from broadcaster.clock import parse_ts
from broadcaster.errors import NotFound
from broadcaster.store import pages as pages_data
from broadcaster.timeline.markdown import plain
from broadcaster.timeline.model import Entry

from .render import FeedSource, render_atom, render_json_feed, render_rss

FRESH = 1.0
INCIDENT_LIMIT = 200
GLOBAL_LIMIT = 50
CACHE_SIZE = 256
FEED_BYTES = 2 * 1024 * 1024
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FORMATS: dict[str, tuple[str, Callable[..., bytes]]] = {
    "atom": ("application/atom+xml", render_atom),
    "rss": ("application/rss+xml", render_rss),
    "json": ("application/feed+json", render_json_feed),
}


@dataclass(frozen=True)
class Rendered:
    """One rendered feed, plain and gzipped, with validators; headers are built once."""

    body: bytes
    content_type: str
    etag: str
    modified: datetime
    gzipped: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    gzip_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        common = {
            "Content-Type": self.content_type,
            "Last-Modified": format_datetime(self.modified.replace(microsecond=0), usegmt=True),
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
            "Access-Control-Allow-Origin": "*",
        }
        self.headers.update(common, ETag=self.etag)
        self.gzip_headers.update(common, ETag=self.gzip_etag, **{"Content-Encoding": "gzip"})

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gz"'


def rendered(body: bytes, content_type: str, etag: str, modified: datetime) -> Rendered:
    """Return a ``Rendered`` with its gzipped twin (run it in a worker thread)."""
    return Rendered(body, content_type, etag, modified, gzip.compress(body, 6, mtime=0))


def within_bytes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the newest entries whose text fits ``FEED_BYTES`` (always at least one)."""
    used, budget = 0, FEED_BYTES
    for n, entry in enumerate(entries):
        used += len(entry["body"].encode()) + len(entry["html"].encode())
        if used > budget and n:
            return entries[:n]
    return entries


class Heads:
    """Hold every incident's ``(seq, hash)``; see the module docstring for freshness."""

    def __init__(self, read: Callable[[Callable[[Any], Any]], Awaitable[Any]]):
        self._read = read
        self._heads: dict[str, tuple[int, str]] = {}
        self._checked: dict[str, float] = {}
        self._all_checked = 0.0
        self._signature: str | None = None

    def note(self, incident_id: str, seq: int, head_hash: str) -> None:
        """Move an incident's head forward (never back)."""
        current = self._heads.get(incident_id)
        if current is None or seq > current[0]:
            self._heads[incident_id] = (seq, head_hash)
            self._signature = None

    async def get(self, incident_id: str) -> tuple[int, str] | None:
        """Return the incident's head, or ``None`` if there is no such incident."""
        if time.monotonic() - self._checked.get(incident_id, -FRESH) >= FRESH:
            found = await self._read(lambda conn: pages_data.head(conn, incident_id))
            if found is None:
                return None
            self.note(incident_id, *found)
            self._checked[incident_id] = time.monotonic()
        return self._heads.get(incident_id)

    async def signature(self) -> str:
        """Return a digest of every incident's head: the all-incidents feed's version."""
        if time.monotonic() - self._all_checked >= FRESH:
            for incident_id, seq, head_hash in await self._read(pages_data.heads):
                self.note(incident_id, seq, head_hash)
            self._all_checked = time.monotonic()
        if self._signature is None:
            digest = hashlib.sha256()
            for incident_id in sorted(self._heads):
                digest.update(f"{incident_id}\n{self._heads[incident_id][1]}\n".encode())
            self._signature = digest.hexdigest()
        return self._signature


class FeedCache:
    """Keep one render per feed, for its current head; concurrent misses share one render.

    Only the newest version of a feed is kept: nobody can ask for an older head
    (its ETag answers 200 with the new render), so older renders would be dead
    weight (tens of MiB for a busy incident).
    """

    def __init__(self, heads: Heads, size: int = CACHE_SIZE) -> None:
        self.heads = heads
        self.size = size
        self._items: OrderedDict[tuple[str, ...], tuple[str, Rendered]] = OrderedDict()
        self._pending: dict[tuple[str, ...], asyncio.Future[Rendered]] = {}
        self.renders = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get(
        self, feed: tuple[str, ...], version: str, render: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        found = self._items.get(feed)
        if found is not None and found[0] == version:
            self._items.move_to_end(feed)
            return found[1]
        key = (*feed, version)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            rendered = await render()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(rendered)
        self.renders += 1
        self._items[feed] = (version, rendered)
        self._items.move_to_end(feed)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return rendered


FEEDS = web.AppKey("feeds", FeedCache)


def etag_for(*parts: str) -> str:
    return '"' + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40] + '"'


def not_modified(request: web.Request, etags: tuple[str, ...], modified: datetime) -> bool:
    """Apply RFC 9110 preconditions: ``If-None-Match`` wins over ``If-Modified-Since``.

    ``If-None-Match`` compares weakly, so the tag of either coding matches.
    """
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = {tag.strip().removeprefix("W/") for tag in inm.split(",")}
        return "*" in tags or not tags.isdisjoint(etags)
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return modified.replace(microsecond=0) <= since
    return False


#: ``Accept-Encoding`` values seen, and whether each takes gzip (browsers send a few).
_GZIP_OK: dict[str, bool] = {}


def accepts_gzip(request: web.Request) -> bool:
    """Tell whether the client takes gzip (``Accept-Encoding``, honouring ``q=0``)."""
    accept = request.headers.get("Accept-Encoding", "")
    found = _GZIP_OK.get(accept)
    if found is None:
        found = _parse_gzip(accept)
        if len(_GZIP_OK) < 256:  # bounded: odd values are parsed each time instead
            _GZIP_OK[accept] = found
    return found


def _parse_gzip(accept: str) -> bool:
    for part in accept.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() == "gzip":
            quality = params.strip().lower().removeprefix("q=")
            return not quality or quality.strip("0.") != ""
    return False


def respond(request: web.Request, rendered: Rendered) -> web.Response:
    zipped = bool(rendered.gzipped) and accepts_gzip(request)
    headers = rendered.gzip_headers if zipped else rendered.headers
    if not_modified(request, (rendered.etag, rendered.gzip_etag), rendered.modified):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.gzipped if zipped else rendered.body, headers=headers)


def feed_dicts(conn: Any, entries: list[Any]) -> list[dict[str, Any]]:
    """Return entries as the renderer wants them, redacted ones with their ``redaction``."""
    dicts = [entry.to_dict() for entry in entries]
    redacted = [(d["incident"], d["seq"]) for d in dicts if d["redacted"]]
    found = pages_data.redactions(conn, redacted) if redacted else {}
    for d in dicts:
        if d["redacted"] and (d["incident"], d["seq"]) in found:
            d["redaction"] = found[(d["incident"], d["seq"])]
    return dicts


async def incident_feed(request: web.Request) -> web.Response:
    fmt = request.match_info["fmt"]
    incident_id = request.match_info["incident"]
    cache = request.app[FEEDS]
    head = await cache.heads.get(incident_id)
    if head is None:
        raise NotFound(f"no incident {incident_id!r}", code="incident_not_found")
    ctype, renderer = FORMATS[fmt]
    settings = request.app[SETTINGS]

    async def render() -> Rendered:
        def job(conn: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            incident = pages_data.incidents_by_id(conn, [incident_id])[incident_id]
            entries = pages_data.latest_entries(conn, incident_id, INCIDENT_LIMIT)
            return incident, within_bytes(feed_dicts(conn, entries))

        incident, entries = await request.app[DB].read(job)
        updated = parse_ts(entries[0]["posted_at"] if entries else incident["created_at"])
        source = FeedSource(
            public_url=settings.public_url,
            title=incident["title"],
            subtitle=plain(incident["summary"] or "", 200) or settings.site_name,
            self_path=f"/incidents/{incident_id}/feed",
            html_path=f"/incidents/{incident_id}",
            updated=updated,
            language=settings.lang,
            author_name=settings.department,
        )
        etag = etag_for(fmt, incident_id, head[1])
        return await asyncio.to_thread(
            lambda: rendered(renderer(source, entries), ctype, etag, updated)
        )

    return respond(request, await cache.get(("incident", incident_id, fmt), head[1], render))


async def global_feed(request: web.Request) -> web.Response:
    signature = await request.app[FEEDS].heads.signature()
    return await across_incidents(
        request,
        ("all",),
        signature,
        lambda conn: pages_data.latest_across(conn, GLOBAL_LIMIT),
        title=request.app[SETTINGS].site_name,
        html_path="/",
        self_path="/feed",
        etag_parts=("*", signature),
    )


async def across_incidents(
    request: web.Request,
    key: tuple[str, ...],
    version: str,
    latest: Callable[[Any], list[Entry]],
    *,
    title: str,
    html_path: str,
    self_path: str,
    etag_parts: tuple[str, ...],
) -> web.Response:
    """Answer a feed of the latest entries of several incidents (the site's, an area's).

    ``latest(conn)`` picks the entries; the rendered bytes are kept per
    ``key`` and format until ``version`` changes.
    """
    fmt = request.match_info["fmt"]
    ctype, renderer = FORMATS[fmt]
    settings = request.app[SETTINGS]

    async def render() -> Rendered:
        def job(conn: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            entries = latest(conn)
            ids = sorted({e.incident for e in entries})
            return pages_data.incidents_by_id(conn, ids), within_bytes(feed_dicts(conn, entries))

        incidents, entries = await request.app[DB].read(job)
        updated = parse_ts(entries[0]["posted_at"]) if entries else EPOCH
        source = FeedSource(
            public_url=settings.public_url,
            title=title,
            subtitle=settings.department,
            self_path=self_path,
            html_path=html_path,
            updated=updated,
            language=settings.lang,
            author_name=settings.department,
        )
        etag = etag_for(fmt, *etag_parts)
        return await asyncio.to_thread(
            lambda: rendered(renderer(source, entries, incidents), ctype, etag, updated)
        )

    return respond(request, await request.app[FEEDS].get((*key, fmt), version, render))


async def follow_bus(app: web.Application) -> None:
    """Move heads forward from the bus (the periodic refresh covers what it loses)."""
    heads = app[FEEDS].heads

    async def note(message: BusMessage) -> None:
        if isinstance(message, EntryMessage):
            heads.note(message.incident, message.seq, message.hash)

    await listen_forever(app[BUS], note, name="the feeds")


async def _bus_task(app: web.Application) -> AsyncIterator[None]:
    async with background(follow_bus(app), "feeds-bus"):
        yield


def setup(app: web.Application) -> None:
    app[FEEDS] = FeedCache(Heads(app[DB].read))
    app.cleanup_ctx.append(_bus_task)
    fmt = "{fmt:atom|rss|json}"
    app.router.add_get(f"/incidents/{{incident}}/feed.{fmt}", incident_feed)
    app.router.add_get(f"/feed.{fmt}", global_feed)
