"""Choose the database for the configuration, and keep the bus behind the replica.

``database_for(settings)`` is the one place that knows how the data is kept:
``DATA_DIR/broadcaster.db`` alone on a single node or, with
``BROADCASTER_REDIS_URL`` set, the same file as a replica of the shared log
in Redis (``broadcaster.replication``). The file says which it is (a replica
has a ``wal_state`` table), and neither mode opens the other's file: a
single-node database is never overwritten by a replica, and a replica never
takes writes that bypass the log.

``ReplicatedBus`` is the Redis bus of a replicated node. The publisher
stamps each message with the log position of its write (``"w"`` in the first
line); a listener on this node receives the message only once its replica
holds that position. So, as on a single node, whatever the bus announces can
already be read from the store: the hub's backlogs and gap fills, the feeds'
caches keyed by head and the pages never see an entry the store lacks. The
wait is the follower's apply time, a millisecond or so, since the log entry
is appended before the message is published; after ``APPLY_WAIT`` seconds
(replica stuck) the message goes through anyway and the hub fills any gap
later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .bus import Message
from .db import Database
from .redis_bus import RedisBus
from .settings import Settings

log = logging.getLogger(__name__)
DATABASE_FILE = "broadcaster.db"
#: The topic that tells listeners to re-read the store (``channels.hub.RESUBSCRIBED``).
RESUBSCRIBED = "bus:resubscribed"


def database_path(settings: Settings) -> Path:
    """Return the SQLite file this configuration reads and writes."""
    return settings.data_dir / DATABASE_FILE


def database_for(
    settings: Settings, schema: Iterable[str] = (), *, key_id: str | None = None
) -> Database:
    """Return the (unopened) database for ``settings``; ``key_id`` is checked across nodes."""
    if not settings.redis_url:
        return Database(database_path(settings), schema)
    from .replication import Replication  # imported only in multi-node mode

    replication = Replication(settings.redis_url, key_id=key_id)
    return Database(database_path(settings), schema, replication=replication)


def position_of(message: str) -> str | None:
    """Return the log position stamped on a bus message, if any."""
    head = message[: message.find("\n")]
    if '"w"' not in head:
        return None
    try:
        position = json.loads(head).get("w")
    except (ValueError, AttributeError):
        return None
    return position if isinstance(position, str) else None


class ReplicatedBus(RedisBus):
    """Deliver a bus message on this node only once the replica holds its write.

    Pub/sub keeps nothing: when the subscription comes back after a drop, the
    bus says so with a ``RESUBSCRIBED`` message, delivered once the replica
    has caught up with the log, so that every live subscription re-reads what
    it may have missed meanwhile (the hub's resync).
    """

    def __init__(self, url: str, db: Database, **options: Any) -> None:
        super().__init__(url, **options)
        self.db = db
        self._subscribed_before = False

    def _handle(self, message: dict[str, Any]) -> None:
        again = message["type"] == "psubscribe" and self._subscribed_before
        if message["type"] == "psubscribe":
            self._subscribed_before = True
        super()._handle(message)
        if again:
            log.info("Redis bus subscribed again; live clients resync")
            self.deliver_locally(RESUBSCRIBED, "")

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Message]]:
        async with super().listen() as messages:
            yield self._after_apply(messages)

    async def _after_apply(self, messages: AsyncIterator[Message]) -> AsyncIterator[Message]:
        async for topic, message in messages:
            if topic == RESUBSCRIBED:
                await self.db.sync()
            position = position_of(message)
            if position is not None and not await self.db.wait_applied(position):
                log.warning("the replica did not reach %s in time; delivering anyway", position)
            yield topic, message
