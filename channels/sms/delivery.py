"""Send SMS deliveries from the outbox through the configured gateway, at a bounded rate.

``BROADCASTER_SMS_GATEWAY`` picks the gateway by URL scheme:

* ``kannel+http://USER:PASS@HOST:13013/cgi-bin/sendsms?from=12379`` is
  Kannel's sendsms interface (``https`` works too). ``from`` overrides
  ``BROADCASTER_SMS_SENDER``; ``dlr-base=http://127.0.0.1:8080`` sets where
  Kannel sends delivery reports (default ``BROADCASTER_PUBLIC_URL``); other
  query parameters (``smsc=...``) are passed to sendsms as they are.
* ``json+https://ACCOUNT:whsec_SECRET@HOST/PATH`` is the signed JSON gateway
  (``channels.sms.signed_json``).

An entry delivery is composed when it is sent, from the store, by
``channels.sms.message.entry_message``: the incident's title, what a status
entry changed, the entry's body as plain text, its permanent link and
``回TD退订`` (an area alert also names the incident's code to subscribe to),
never cut (a post whose SMS would exceed ``BROADCASTER_SMS_MAX_SEGMENTS`` was
refused). A subscriber who left meanwhile, or an
entry redacted meanwhile, cancels it. A gateway "queued" answer counts as
handed over: the delivery report says the rest. Sends are spaced to at most
``BROADCASTER_SMS_RATE`` per second, across all of this worker's tasks.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from broadcaster.errors import ConfigError
from broadcaster.settings import Settings
from broadcaster.store import areas as areas_store
from broadcaster.store import sms as store
from broadcaster.store.contract import JobDatabase as Database
from broadcaster.store.outbox import Delivery
from broadcaster.store.timeline import read_entries

from ..delivery.outbox import Result
from .gateway import SmsGateway
from .kannel import KannelGateway
from .message import entry_message
from .signed_json import SignedJsonGateway

CHANNEL = "sms"
ENTRY_EVENT = "entry.sms"
REPLY_EVENT = "sms.reply"
#: An incident's alert to an area subscriber (``channels.sms.area_alerts``).
AREA_EVENT = "entry.sms.area"
_SAFE_SECRET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


def dlr_url(base: str, secret: str | None) -> str:
    """Return the delivery report URL gateways call (``/sms/dlr``, with the secret if set)."""
    url = base.rstrip("/") + "/sms/dlr"
    if secret:
        if not set(secret) <= _SAFE_SECRET:
            raise ConfigError(
                "BROADCASTER_SMS_SECRET must use only letters, digits and ._~- "
                "(Kannel rewrites %-escapes in callback URLs)"
            )
        url += "?secret=" + secret
    return url


def gateway_from_url(url: str, settings: Settings) -> SmsGateway:
    """Build the gateway named by ``BROADCASTER_SMS_GATEWAY``; a bad URL raises ``ConfigError``."""
    scheme, _, rest = url.partition("+")
    parts = urlsplit(rest)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "BROADCASTER_SMS_GATEWAY must look like kannel+http://user:pass@host:13013"
            "/cgi-bin/sendsms or json+https://account:whsec_secret@host/path"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in query if key in ("from", "dlr-base")}
    passed = urlencode([(k, v) for k, v in query if k not in options])
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    if ":" in parts.hostname:
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, passed, ""))
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    sender = options.get("from") or settings.sms_sender
    report = dlr_url(options.get("dlr-base") or settings.public_url, settings.sms_secret)
    timeout = float(settings.delivery_timeout)
    try:
        if scheme == "kannel":
            return KannelGateway(bare, user, password, sender, report, timeout=timeout)
        if scheme == "json":
            return SignedJsonGateway(bare, password, user, sender, report, timeout=timeout)
    except ValueError as exc:
        raise ConfigError(f"BROADCASTER_SMS_GATEWAY: {exc}") from None
    raise ConfigError(f"BROADCASTER_SMS_GATEWAY: unknown gateway kind {scheme!r} (kannel, json)")


class RateLimit:
    """Space calls ``1/rate`` seconds apart, whoever makes them (no bursts)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        moment = loop.time()
        slot = max(moment, self._next)
        self._next = slot + self.interval
        if slot > moment:
            await asyncio.sleep(slot - moment)


class SmsSender:
    """The outbox sender for ``sms`` deliveries: entries to subscribers, and replies."""

    channel = CHANNEL
    per_target = 1  # one phone's messages go out in order

    def __init__(self, db: Database, gateway: SmsGateway, settings: Settings) -> None:
        self.db = db
        self.gateway = gateway
        self.settings = settings
        # Never hold more leases than a second of sending needs.
        self.concurrency = max(1, min(32, settings.sms_rate))
        self.rate = RateLimit(settings.sms_rate)

    async def send(self, delivery: Delivery) -> Result:
        if delivery.event == REPLY_EVENT:
            message = json.loads(delivery.payload or "{}")
            to, text = message.get("to"), message.get("text")
            if not to or not text:
                return Result("failed", error="the reply has no recipient or text")
        else:
            composed = await self.db.read(lambda conn: self._compose(conn, delivery))
            if isinstance(composed, Result):
                return composed
            to, text = composed
        await self.rate.wait()
        try:
            sent = await self.gateway.send(to=to, text=text, message_id=delivery.message_id)
        except ValueError as exc:
            return Result("failed", error=str(exc))
        code = _leading_int(sent.detail)
        if sent.outcome in ("accepted", "queued"):
            return Result("ok", state=sent.outcome, code=code)
        if sent.outcome == "retry":
            return Result("retry", code=code, error=sent.detail[:300])
        return Result("failed", code=code, error=sent.detail[:300])

    def _compose(self, conn: Any, delivery: Delivery) -> tuple[str, str] | Result:
        area_alert = delivery.event == AREA_EVENT
        number = (areas_store if area_alert else store).number_of(conn, delivery.target)
        if number is None:
            return Result("cancel", error="the subscriber unsubscribed")
        title = store.incident_title(conn, delivery.incident)
        entries = read_entries(conn, delivery.incident, delivery.seq - 1, 1)
        if title is None or not entries or entries[0].seq != delivery.seq:
            return Result("failed", error="the entry is gone")
        entry = entries[0]
        if entry.redacted:
            return Result("cancel", error="the entry was redacted before it was sent")
        code = areas_store.incident_code(conn, delivery.incident) if area_alert else None
        try:
            # The text the editor was shown and the post was checked against: never cut here.
            text = entry_message(
                self.settings,
                title,
                delivery.incident,
                delivery.seq,
                entry.record,
                entry.body,
                area_code=code,
            )
        except ValueError as exc:
            return Result("failed", error=f"cannot compose the SMS: {exc}")
        return number, text

    def settle(self, conn: Any, delivery: Delivery, result: Result, state: str) -> None:
        return None

    async def close(self) -> None:
        await self.gateway.close()


def _leading_int(detail: str) -> int | None:
    head = detail.split(" ", 1)[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) == 3 else None
