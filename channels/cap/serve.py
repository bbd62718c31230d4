"""Serve CAP 1.2 alerts: ``/incidents/{id}/cap.xml`` and ``/incidents/{id}/entries/{seq}/cap.xml``.

The incident's alert is the alert of its latest entry (``msgType`` Alert for
seq 1, Update referencing the previous entry's alert after that, Cancel for
the status entry that resolves it); each entry keeps its own alert at its own
URL, so a receiver can follow ``references`` back through the timeline. The
rendering is ``channels.cap.render``'s; this module only reads the two entries
needed and answers HTTP.

``sender`` is the host of ``BROADCASTER_PUBLIC_URL`` (CAP wants a stable,
globally unique sender id, and the public host is one the office controls);
``senderName`` is ``BROADCASTER_DEPARTMENT``. Alerts are small and cheap, so
they are rendered per request and the ``ETag`` is a hash of the bytes
themselves: a redaction, which changes an old entry's alert without changing
its seq, changes the tag too. ``Cache-Control: no-cache`` makes caches
revalidate for the same reason. A redacted entry's alert carries the
redaction notice, never its text or figures.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from aiohttp import web

from broadcaster.api.common import incident_or_404, seq_param
from broadcaster.appkeys import DB, SETTINGS, STORE
from broadcaster.errors import NotFound
from broadcaster.store import areas as areas_store
from broadcaster.store import pages as pages_data

from .render import render_cap

CONTENT_TYPE = "application/cap+xml"


def sender_of(public_url: str) -> str:
    """Return the CAP sender for a public base URL: its host name."""
    return urlsplit(public_url).hostname or "localhost"


async def _alert(request: web.Request, seq: int | None) -> web.Response:
    incident = await incident_or_404(request)
    head = incident["head"]["seq"]
    seq = head if seq is None else seq
    if not 1 <= seq <= head:
        if head == 0:
            raise NotFound("the incident has no entry to alert about yet", code="no_alert")
        raise NotFound(f"no entry #{seq} in {incident['id']!r}", code="entry_not_found")
    entries = await request.app[STORE].entries(incident["id"], max(0, seq - 2), min(seq, 2))
    by_seq = {entry.seq: entry.to_dict() for entry in entries}
    # Each alert carries the level, area and advice in force when its entry was posted.
    state = await request.app[DB].read(lambda c: pages_data.state_at(c, incident["id"], seq))
    codes = incident.get("areas") or []
    names = await request.app[DB].read(lambda conn: areas_store.names(conn, codes))
    settings = request.app[SETTINGS]
    body = render_cap(
        {**incident, **state},
        by_seq[seq],
        by_seq.get(seq - 1),
        public_url=settings.public_url,
        sender=sender_of(settings.public_url),
        sender_name=settings.department,
        language=settings.lang,
        areas=[(code, names.get(code, code)) for code in codes],
    )
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPE})


async def incident_alert(request: web.Request) -> web.Response:
    return await _alert(request, None)


async def entry_alert(request: web.Request) -> web.Response:
    return await _alert(request, seq_param(request))


def setup(app: web.Application) -> None:
    app.router.add_get("/incidents/{incident}/cap.xml", incident_alert)
    app.router.add_get("/incidents/{incident}/entries/{seq}/cap.xml", entry_alert)
