"""Append to a timeline and announce the result: the one path every write takes.

Other modules do not call the store's ``append`` directly: they call
``Publisher.append``, so that the checks and hooks registered here (the
disclosure review, figures rules, the delivery outbox, the search index) run
inside the same transaction for every kind of entry, and the committed entry
is published on the bus exactly once, after it is durable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..bus import Bus
from ..bus.message import EntryMessage, encode
from ..metrics import Metrics
from ..store.contract import Store
from .model import Actor, Entry, NewEntry
from .rules import AppendCheck, AppendHook

log = logging.getLogger(__name__)

#: A pre-publication review: ``review(new, options, actor) -> new``. ``options``
#: holds the request's review answers (``mask``, ``acknowledge``).
Review = Callable[[NewEntry, dict[str, Any], Actor], NewEntry]


class Publisher:
    """Hold the append checks and hooks, append, then publish on the bus."""

    def __init__(self, store: Store, bus: Bus, metrics: Metrics) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.checks: list[AppendCheck] = []
        self.hooks: list[AppendHook] = []
        self.reviews: list[Review] = []

    def review(self, new: NewEntry, options: dict[str, Any], actor: Actor) -> NewEntry:
        """Run the pre-publication reviews; each may refuse (422) or rewrite the entry."""
        for review in self.reviews:
            new = review(new, options, actor)
        return new

    async def append(
        self,
        incident_id: str,
        new: NewEntry,
        actor: Actor,
        *,
        remote: str | None = None,
        checks: tuple[AppendCheck, ...] = (),
        hooks: tuple[AppendHook, ...] = (),
    ) -> tuple[Entry, dict[str, Any]]:
        """Append ``new`` (already reviewed) with every registered check and hook.

        The caller's ``checks`` run first: they decide whether this request
        appends at all (a replayed Idempotency-Key, a draft already decided, an
        incident that takes drafts), before the registered checks judge the entry.
        """
        entry, checkpoint = await self.store.append(
            incident_id,
            new,
            actor,
            checks=(*checks, *self.checks),
            hooks=(*self.hooks, *hooks),
            remote=remote,
        )
        self.metrics.entries.labels(new.kind).inc()
        await self.announce(entry)
        return entry, checkpoint

    async def announce(self, entry: Entry) -> None:
        """Publish a committed entry; a bus failure is logged, never un-acknowledged."""
        try:
            await self.bus.publish(*encode(EntryMessage.of(entry, published=time.time())))
        except Exception as exc:  # the entry is durable; other nodes catch up from the store
            log.warning("publishing %s#%s on the bus failed: %s", entry.incident, entry.seq, exc)
