"""Send entries to subscribers' HTTPS endpoints, signed per the Standard Webhooks specification.

Each delivery is a POST of ``{"type", "timestamp", "data": <entry>}`` with the
``webhook-id`` (``msg_<delivery id>``, the same on every retry),
``webhook-timestamp`` and ``webhook-signature`` headers, signed by the
``standardwebhooks`` library with the endpoint's ``whsec_`` secret. The entry
is read from the store when the attempt starts, so a redacted entry goes out
withheld. Only a 2xx answer counts as delivered.

Failure policy: every other answer, a timeout (``BROADCASTER_DELIVERY_TIMEOUT``
for the whole attempt, body included; at most ``MAX_RESPONSE`` bytes are read)
or a refused address is retried on the schedule; ``Retry-After`` on a 429 or
503 is honoured when longer. Redirects are not followed. ``410 Gone``
disables the endpoint at once. An endpoint is also disabled, with the reason
shown to admins, after ``DEAD_LIMIT`` deliveries in a row exhausted every
attempt, or when it has failed without a single success for
``FAILING_LIMIT`` seconds. A paused or disabled endpoint's deliveries are
held, not dropped: resuming sends them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from broadcaster.areas import RANKS
from broadcaster.clock import now
from broadcaster.model import Entry
from broadcaster.store import areas as areas_store
from broadcaster.store import webhooks as store
from broadcaster.store.contract import JobDatabase as Database
from broadcaster.store.outbox import Delivery, enqueue
from broadcaster.store.timeline import read_entries
from broadcaster.store.webhooks import CHANNEL
from broadcaster.text import decode_bytes

from .outbox import Result
from .ssrf import Guard, Refused, SafeResolver

EVENTS = ("entry.created", "entry.redacted")
MAX_RESPONSE = 64 * 1024
DEAD_LIMIT = 5
FAILING_LIMIT = 24 * 3600
USER_AGENT = "Broadcaster-Webhooks/1"


def planned(entry: Entry, events: list[str]) -> list[tuple[str, int]]:
    """Return the (event, seq) pairs an entry causes for an endpoint subscribed to ``events``."""
    found = []
    if "entry.created" in events:
        found.append(("entry.created", entry.seq))
    redacts = entry.record.get("redacts")
    if "entry.redacted" in events and entry.record["kind"] == "redaction" and redacts:
        found.append(("entry.redacted", int(redacts)))
    return found


def enqueue_webhooks(conn: Any, incident: Any, entry: Entry) -> int:
    """Add a delivery per matching endpoint and event (held for paused or disabled ones).

    An endpoint with ``areas`` gets the entries of incidents reaching one of
    them (``broadcaster.areas``); with ``min_severity``, of incidents at that
    level or above, before or after the entry (so a downgrade is heard too).
    """
    added = 0
    reached: set[str] | None = None
    severity = entry.record.get("severity") or incident["severity"]
    rank = max(RANKS.get(incident["severity"], 0), RANKS.get(severity, 0))
    for row in store.endpoints(conn):
        scope = json.loads(row["incidents"])
        if scope != "*" and entry.incident not in scope:
            continue
        if row["min_severity"] and rank < RANKS[row["min_severity"]]:
            continue
        if row["areas"]:
            if reached is None:
                reached = areas_store.reached(conn, entry.incident)
            if reached.isdisjoint(json.loads(row["areas"])):
                continue
        state = "pending" if row["status"] == "active" else "held"
        for event, seq in planned(entry, json.loads(row["events"])):
            added += enqueue(conn, CHANNEL, row["id"], event, entry.incident, seq, state=state)
    return added


def body_of(event: str, timestamp: str, entry: Entry) -> str:
    """Return the JSON text sent (and signed), reusing the entry's cached serialisation."""
    head = json.dumps({"type": event, "timestamp": timestamp}, ensure_ascii=False)
    return head[:-1] + ',"data":' + entry.to_json() + "}"


def sign(secret: str, message_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    """Return the Standard Webhooks headers for ``body``."""
    moment = (at or now()).astimezone(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def retry_after(value: str | None) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now()).total_seconds())


def classify(status: int, excerpt: bytes, headers: Any) -> Result:
    """Turn an endpoint's answer into an attempt result."""
    if 200 <= status < 300:
        return Result("ok", code=status)
    text = decode_bytes(excerpt, limit=200).strip()
    if status == 410:
        return Result("hold", code=status, error="410 Gone: the endpoint was disabled")
    if 300 <= status < 400:
        where = headers.get("Location", "")
        return Result("retry", code=status, error=f"redirects are not followed ({where[:200]})")
    wait = retry_after(headers.get("Retry-After")) if status in (429, 503) else None
    return Result("retry", code=status, error=f"HTTP {status}: {text}", retry_after=wait)


async def read_capped(response: aiohttp.ClientResponse, cap: int = MAX_RESPONSE) -> bytes:
    """Read at most ``cap`` bytes of a response body; the rest is never read."""
    data = bytearray()
    while len(data) < cap:
        chunk = await response.content.read(cap - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


class WebhookSender:
    """The outbox sender for ``webhook`` deliveries; owns one guarded HTTP session."""

    channel = CHANNEL
    concurrency = 64
    per_target = 4

    def __init__(self, db: Database, allow: tuple[str, ...], timeout: float) -> None:
        self.db = db
        self.guard = Guard(allow)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=SafeResolver(self.guard), limit=self.concurrency, limit_per_host=0
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, 10)),
                auto_decompress=False,
            )
        return self._session

    async def send(self, delivery: Delivery) -> Result:
        def load(conn: Any) -> tuple[Any, list[Entry]]:
            hook = store.target(conn, delivery.target)
            return hook, read_entries(conn, delivery.incident, delivery.seq - 1, 1)

        hook, entries = await self.db.read(load)
        if hook is None:
            return Result("cancel", error="the webhook was deleted")
        if hook["status"] != "active":
            return Result("hold", error=f"the webhook is {hook['status']}")
        if not entries or entries[0].seq != delivery.seq:
            return Result("failed", error=f"entry {delivery.incident}#{delivery.seq} not found")
        try:
            url = self.guard.check_url(hook["url"])
        except Refused as exc:
            return Result("retry", error=f"refused: {exc}")
        body = body_of(delivery.event, delivery.created_at, entries[0])
        headers = sign(hook["secret"], delivery.message_id, body)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session().post(
                    url, data=body.encode("utf-8"), headers=headers, allow_redirects=False
                ) as response:
                    excerpt = await read_capped(response)
                    return classify(response.status, excerpt, response.headers)
        except TimeoutError:
            return Result("retry", error=f"no complete answer within {self.timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Result("retry", error=f"{type(exc).__name__}: {exc}"[:300])

    def settle(self, conn: Any, delivery: Delivery, result: Result, state: str) -> None:
        """Track the endpoint's health and disable it when it keeps failing."""
        if result.outcome == "ok":
            store.record_success(conn, delivery.target)
            return
        if result.outcome in ("retry", "failed") or result.code == 410:
            row = store.health(conn, delivery.target)
            if row is None:
                return
            at = now().timestamp()
            since = row["failing_since"] or at
            dead = row["consecutive_dead"] + (state == "dead")
            store.record_failing(conn, delivery.target, since, dead)
            reason = None
            if result.code == 410:
                reason = "the endpoint answered 410 Gone"
            elif dead >= DEAD_LIMIT:
                reason = f"{dead} deliveries in a row failed every attempt"
            elif at - since >= FAILING_LIMIT:
                reason = f"every attempt failed for {FAILING_LIMIT // 3600} hours"
            if reason:
                store.set_status(conn, delivery.target, "disabled", reason)
        # Paused or disabled while this attempt ran: hold its retry too.
        store.hold_if_inactive(conn, delivery.id, delivery.target)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
