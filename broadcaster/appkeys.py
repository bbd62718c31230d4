"""Name the typed pieces of application state every module may reach."""

from __future__ import annotations

from aiohttp import web

from .bus import Bus
from .db import Database
from .metrics import Metrics
from .publisher import Publisher
from .settings import Settings
from .signing import Signer
from .sqlite_store import SQLiteStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", SQLiteStore)
DB = web.AppKey("db", Database)
BUS = web.AppKey("bus", Bus)
SIGNER = web.AppKey("signer", Signer)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", Metrics)
