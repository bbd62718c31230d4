"""Feed live viewers from the store whenever the bus fails to bring them an entry.

The bus is fast but keeps nothing: Redis down, a node's subscription cut, a
message lost between nodes. So every node also compares, once a second, the
store's head of each incident it serves with what each of its viewers has
been sent. A viewer still behind a head that the store already had at the
previous look (so behind for a whole interval, not merely racing a message in
flight) is resynced from the store, unless the hub itself already handed that
head out: such viewers are slow, not missing anything, and the hub's own gap
filling serves them (resyncing thousands of slow viewers at once would only
make them slower). With Redis unreachable, viewers on every
node therefore get new entries within about two intervals (the contract's
"within 5 seconds"), and sub-second delivery returns with the bus.

The cost is one head read per followed incident per interval and node, paid
whether the bus works or not: it also catches what a working bus lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from broadcaster.appkeys import STORE
from broadcaster.background import background
from broadcaster.store.contract import Store
from channels.live.hub import HUB, Hub, Subscription

log = logging.getLogger(__name__)
#: Seconds between two looks at the store's heads.
INTERVAL = 1.0


async def watch(hub: Hub, store: Store, interval: float = INTERVAL) -> None:
    """Resync every subscription that stayed behind the store's head for an interval."""
    behind: dict[Subscription, int] = {}
    while True:
        await asyncio.sleep(interval)
        now_behind: dict[Subscription, int] = {}
        for incident, subscriptions in list(hub.subscriptions.items()):
            try:
                head = await store.head(incident)
            except Exception as exc:  # the store is down too: look again next time
                log.warning("catch-up could not read the head of %s: %s", incident, exc)
                continue
            if head is None:
                continue
            if hub.latest.get(incident, 0) >= head.seq:
                continue  # the hub handed the head out: viewers behind it are slow, not missing it
            for subscription in tuple(subscriptions):
                if subscription.last >= head.seq:
                    continue
                if subscription.last < behind.get(subscription, 0):
                    subscription.resync()
                now_behind[subscription] = head.seq
        behind = now_behind


async def _watching(app: web.Application) -> AsyncIterator[None]:
    async with background(watch(app[HUB], app[STORE]), "store-catchup"):
        yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_watching)
