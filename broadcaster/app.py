"""Build the aiohttp application: one factory, no module-level state."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from . import areas as areas_api
from .accountability import audit_api, figures_api, metrics_api, promises, questions
from .api import entries, incidents, ops
from .appkeys import BUS, DB, METRICS, PUBLISHER, SETTINGS, SIGNER, STORE
from .auth import tokens_api
from .auth.tokens import TOKENS, Tokens
from .bus import Bus, MemoryBus
from .log import site as sitelog
from .log.signing import Signer
from .metrics import Metrics
from .plugins import BUILTIN_CHANNELS
from .privacy import redaction, review
from .search import service as search
from .settings import Settings
from .store import database_for
from .store.timeline import TimelineStore
from .timeline import drafts
from .timeline.publisher import Publisher
from .web.clientaddr import ClientAddress
from .web.livecap import setup as setup_live_caps
from .web.middleware import HTTPS, errors
from .web.ratelimit import shared_window


def create_app(
    settings: Settings,
    *,
    store: TimelineStore | None = None,
    bus: Bus | None = None,
    signer: Signer | None = None,
    channels: tuple[str, ...] | None = None,
) -> web.Application:
    """Return the whole service as an application; nothing runs until it starts."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signer = signer or Signer.load(settings.data_dir, settings.signing_key)
    if store is None:
        store = TimelineStore(database_for(settings), signer)
    if bus is None:
        bus = _bus_for(settings)
    middlewares: list[Any] = [errors]
    if settings.trusted_proxies:
        middlewares.append(
            ClientAddress(settings.trusted_proxies, settings.proxy_header).middleware
        )
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[SETTINGS] = settings
    app[HTTPS] = settings.public_url.startswith("https://")
    app[SIGNER] = signer
    app[STORE] = store
    app[DB] = store.db
    app[BUS] = bus
    app[TOKENS] = tokens = Tokens(store.db)
    tokens.failures = shared_window(app, "failed-logins", tokens.failures)
    tokens.slow = shared_window(app, "failed-logins-slow", tokens.slow)
    app[METRICS] = metrics = Metrics()
    app[PUBLISHER] = Publisher(store, bus, metrics)
    app.cleanup_ctx.append(_open_parts)
    setup_live_caps(app, settings.max_live_per_client, settings.max_live)
    core = (incidents, entries, ops, figures_api, questions, metrics_api, promises, search)
    for module in (*core, tokens_api, sitelog, review, redaction, drafts, audit_api, areas_api):
        module.setup(app)
    for name in BUILTIN_CHANNELS if channels is None else channels:
        importlib.import_module(name).setup(app)
    return app


def _bus_for(settings: Settings) -> Bus:
    """Return the bus configuration asks for: Redis between nodes, else in-process."""
    if not settings.redis_url:
        return MemoryBus()
    from .bus.redis_bus import RedisBus  # imported only when several nodes share a bus

    return RedisBus(settings.redis_url)


async def _open_parts(app: web.Application) -> AsyncIterator[None]:
    await app[STORE].open()
    await app[BUS].connect()
    try:
        yield
    finally:
        await app[BUS].close()
        await app[STORE].close()
