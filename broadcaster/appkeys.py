"""Name the typed pieces of application state every module may reach."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .bus import Bus
from .log.signing import Signer
from .metrics import Metrics
from .settings import Settings
from .store.contract import JobDatabase
from .store.timeline import TimelineStore
from .timeline.publisher import Publisher

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", TimelineStore)
#: The database behind the store (SQLite or PostgreSQL): the same ``read``/``write`` jobs.
DB = web.AppKey("db", JobDatabase)
BUS = web.AppKey("bus", Bus)
SIGNER = web.AppKey("signer", Signer)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", Metrics)
#: Renders the HTML "not found" page for browsers (set by the pages, if loaded).
NotFoundPage = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOT_FOUND_PAGE: web.AppKey[NotFoundPage] = web.AppKey("not_found_page")
