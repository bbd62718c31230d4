"""Serve SMS: subscriptions by text message, inbound messages, delivery reports, the outbox hook.

Residents text ``订阅 CODE`` / ``SUB CODE`` to subscribe to an incident (or
``订阅 崂山区`` to an area: ``channels.sms.area_alerts``) and
``TD`` / ``退订`` / ``T`` / ``STOP`` / ``UNSUB`` to leave (every incident, or one
with ``TD CODE``); anything else gets a short help text. Each command is
confirmed by SMS through the outbox. Numbers are personal information: they
are stored normalised (E.164) only in ``sms_subscribers`` and
``sms_area_subscribers``, deleted on
unsubscribe, and no public surface shows them (the admin view masks them).

``/sms/inbound`` (Kannel's smsbox ``get-url``: ``from``, ``to``, ``text``,
``msgid``) and ``/sms/dlr`` authenticate the gateway by ``BROADCASTER_SMS_SECRET``
(a ``secret`` query parameter or ``X-Broadcaster-Secret`` header). Without a
secret they fail closed: only a direct loopback peer is trusted, and only
while no proxy is configured (``BROADCASTER_TRUSTED_PROXIES``) and the request
carries no forwarding header (a proxy on the same host would otherwise make
everyone look local); ``serve`` says at start which rule applies. The signed
JSON gateway signs its callbacks instead. Gateways retry, so inbound
messages are de-duplicated on ``msgid`` and reports are applied monotonically
(``delivered`` is never downgraded; unknown ids answer 200 and change
nothing). Replies are rate-limited per number (``replies.RecentSenders``);
an unsubscribe always takes effect.
"""

from __future__ import annotations

import hmac
import json
import time
from functools import partial
from typing import Any

from aiohttp import web

from broadcaster.api.common import incident_or_404, json_response
from broadcaster.appkeys import DB, PUBLISHER, SETTINGS
from broadcaster.auth.tokens import require
from broadcaster.errors import BadRequest, NotFound, Unauthorized, Unprocessable, UnsupportedMedia
from broadcaster.settings import Settings
from broadcaster.store import areas as areas_store
from broadcaster.store import outbox as outbox_store
from broadcaster.store import sms as store
from broadcaster.timeline.model import Entry
from broadcaster.web.clientaddr import parse_address, proxied
from broadcaster.web.ratelimit import Limiter, shared_pacer, shared_window

from ..delivery.outbox import outbox_of
from .area_alerts import act_on_area, enqueue_area_sms, unknown_target
from .commands import Command, parse
from .delivery import AREA_EVENT, CHANNEL, ENTRY_EVENT, REPLY_EVENT, SmsSender, gateway_from_url
from .gateway import SmsGateway
from .kannel import parse_dlr
from .message import fits_check
from .numbers import mask, normalize
from .replies import RecentSenders, reply_text, sender_key
from .signed_json import DLR_STATUSES, SignedJsonGateway

MAX_SUBSCRIBERS = 100_000
KANNEL_DLR = {1: "delivered", 2: "undelivered", 4: "buffered", 8: "accepted", 16: "undelivered"}
RANK = {"pending": 0, "dead": 0, "queued": 1, "accepted": 2, "buffered": 3}
RANK |= {"undelivered": 4, "delivered": 5}


def enqueue_sms(conn: Any, incident: Any, entry: Entry) -> int:
    """Queue one SMS per subscriber of the incident for an entry posted with ``sms: true``."""
    if not entry.record.get("sms"):
        return 0
    stamp = entry.record["posted_at"]
    return store.enqueue_entry(
        conn, CHANNEL, ENTRY_EVENT, entry.incident, entry.seq, time.time(), stamp
    )


RECENT: web.AppKey[Limiter] = web.AppKey("sms_recent_senders")
#: None: no gateway configured (SMS endpoints answer 404, nothing is queued).
GATEWAY: web.AppKey[SmsGateway | None] = web.AppKey("sms_gateway")


def authenticate(request: web.Request) -> None:
    """Let only the gateway in: by the shared secret, or by a loopback peer with no proxy."""
    settings = request.app[SETTINGS]
    secret = settings.sms_secret
    given = request.query.get("secret") or request.headers.get("X-Broadcaster-Secret")
    if secret:
        if given and hmac.compare_digest(given.encode(), secret.encode()):
            return
        raise Unauthorized("the SMS gateway secret is missing or wrong", code="gateway_auth")
    peer = parse_address(request.remote)
    loopback = peer is not None and peer.is_loopback
    if not loopback or settings.trusted_proxies or proxied(request):
        raise Unauthorized(
            "set BROADCASTER_SMS_SECRET to accept the gateway from this address",
            code="gateway_auth",
        )


async def callback_params(request: web.Request) -> dict[str, Any]:
    """Return a gateway callback's parameters: a signed JSON body, a form or the query."""
    gateway = request.app[GATEWAY]
    if request.method == "POST" and request.content_type == "application/json":
        if not isinstance(gateway, SignedJsonGateway):
            raise Unauthorized("JSON callbacks need the signed JSON gateway", code="gateway_auth")
        try:
            return gateway.verify(await request.read(), request.headers)
        except ValueError as exc:
            raise Unauthorized(str(exc), code="gateway_signature") from None
    authenticate(request)
    if request.method == "GET":
        return dict(request.query)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedMedia(
            "send a form, a signed JSON body or use GET", code="unsupported_media_type"
        )
    return {**request.query, **(await request.post())}


def _string(params: dict[str, Any], name: str, limit: int) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Unprocessable(f"'{name}' is missing or too long", code="invalid_field", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"'{name}' is not valid text", code="invalid_utf8") from None
    return value


async def inbound(request: web.Request) -> web.Response:
    """Handle a resident's text: subscribe, unsubscribe or help, confirmed by SMS."""
    if request.app[GATEWAY] is None:
        raise NotFound("no SMS gateway is configured", code="sms_disabled")
    params = await callback_params(request)
    msgid = _string(params, "msgid", 128)
    text = _string(params, "text", 1000)
    try:
        number = normalize(_string(params, "from", 40))
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid_number", field="from") from None
    command = parse(text)
    settings = request.app[SETTINGS]
    db = request.app[DB]
    if await db.read(lambda conn: store.inbound_seen(conn, msgid)):
        return web.Response(text="", content_type="text/plain")  # the gateway sent it again
    # Counted once per new message, in one count shared by every node.
    allowed = await request.app[RECENT].count(sender_key(settings, number)) == 0

    def job(conn: Any) -> None:
        inbound_id = store.record_inbound(conn, msgid, time.time(), command.action)
        if inbound_id is None:
            return  # the same message, arriving twice at once
        store.forget_inbound(conn, time.time() - 7 * 86400)
        if command.action != "unsubscribe" and not allowed:
            return
        reply = act(conn, command, number, settings)
        if allowed:
            payload = json.dumps({"to": number, "text": reply_text(settings, *reply)})
            # The inbound id is the target too: replies need not queue in line.
            outbox_store.enqueue(conn, CHANNEL, inbound_id, REPLY_EVENT, "", inbound_id, payload)

    await db.write(job)
    outbox_of(request.app).notify()
    return web.Response(text="", content_type="text/plain")


def act(conn: Any, command: Command, number: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """Apply one command to the subscriptions; return the reply's key and its values.

    A target is looked up among the site's areas first, then among incident codes.
    """
    action, code = command.action, command.code
    if action != "help" and code is not None:
        reply = act_on_area(conn, command, number, settings)
        if reply is not None:
            return reply
    incident = store.incident_by_code(conn, code) if code else None
    if action == "unsubscribe":
        if code is None:
            store.unsubscribe(conn, number)
            areas_store.unsubscribe(conn, number)
            return "unsubscribed_all", {}
        if incident is not None:
            store.unsubscribe(conn, number, incident["id"])
        return "unsubscribed", {"code": code, "title": incident["title"] if incident else code}
    if action == "help" or code is None:
        return "help", {"example": store.latest_active_code(conn) or "SZK"}
    if incident is None:
        return unknown_target(conn, code, settings) or ("unknown_code", {"code": code})
    values = {"code": incident["code"], "title": incident["title"]}
    if incident["status"] != "active":
        return "ended", values
    if store.subscriber_count(conn, incident["id"]) >= MAX_SUBSCRIBERS:
        return "full", values
    store.subscribe(conn, incident["id"], number)
    return "subscribed", values


async def delivery_report(request: web.Request) -> web.Response:
    """Apply a delivery report; a state never goes back, unknown ids change nothing."""
    if request.app[GATEWAY] is None:
        raise NotFound("no SMS gateway is configured", code="sms_disabled")
    params = await callback_params(request)
    if "status" in params:
        message_id, state = params.get("message_id"), DLR_STATUSES.get(params["status"])
        if not isinstance(message_id, str) or state is None:
            raise Unprocessable("'message_id' and a known 'status' are required", field="status")
    else:
        try:
            message_id, kind = parse_dlr(params)
        except ValueError as exc:
            raise Unprocessable(str(exc), code="invalid_dlr", field="type") from None
        state = KANNEL_DLR[kind]
    raw_id = message_id.removeprefix("msg_")
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:
        return web.Response(text="")

    earlier = [known for known, rank in RANK.items() if rank < RANK[state]]
    job = partial(outbox_store.advance, delivery_id=int(raw_id), channel=CHANNEL, state=state)
    await request.app[DB].write(partial(job, before=earlier))
    return web.Response(text="")


async def incident_sms(request: web.Request) -> web.Response:
    """Show an admin the subscriber count, recent numbers (masked) and delivery states."""
    await require(request, "admin")
    incident = await incident_or_404(request)

    def job(conn: Any) -> dict[str, Any]:
        recent = store.recent_subscribers(conn, incident["id"])
        return {
            "incident": incident["id"],
            "code": incident["code"],
            "subscribers": store.subscriber_count(conn, incident["id"]),
            "recent": [
                {"number": mask(r["number"]), "since": r["created_at"], "source": r["source"]}
                for r in recent
            ],
            "deliveries": store.delivery_states(conn, CHANNEL, incident["id"], ENTRY_EVENT),
            "area_deliveries": store.delivery_states(conn, CHANNEL, incident["id"], AREA_EVENT),
        }

    return json_response(await request.app[DB].read(job))


def setup(app: web.Application) -> None:
    """Add the SMS tables and endpoints; with a gateway configured, queue and send SMS."""
    settings = app[SETTINGS]
    db = app[DB]
    outbox = outbox_of(app)
    gateway = gateway_from_url(settings.sms_gateway, settings) if settings.sms_gateway else None
    app[GATEWAY] = gateway
    app[RECENT] = shared_window(app, "sms-replies", RecentSenders())
    # Refused before anything is stored, with or without a gateway: what an editor
    # posts for SMS must go out whole whenever one is configured.
    app[PUBLISHER].checks.append(fits_check(settings))
    if gateway is not None:
        outbox.enqueuers.append(enqueue_sms)
        outbox.enqueuers.append(enqueue_area_sms)
        sender = outbox.senders[CHANNEL] = SmsSender(db, gateway, settings)
        sender.rate = shared_pacer(app, "sms", sender.rate)  # one send rate for all workers
    for method in ("GET", "POST"):
        app.router.add_route(method, "/sms/inbound", inbound)
        app.router.add_route(method, "/sms/dlr", delivery_report)
    app.router.add_get("/api/incidents/{incident}/sms", incident_sms)
