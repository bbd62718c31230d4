"""Serve ``/api/webhooks`` (admin): register, list, read, delete, pause and resume endpoints.

The signing secret is returned once, in the ``201`` of the registration, and
never again. URLs are checked against the SSRF guard when registered (and
again at every send, in ``channels.webhooks.send``): an internal address answers
``422`` with the guard's code (``url_forbidden_address``, ``url_ambiguous_ip``,
``url_unresolvable``, ...). ``GET /api/webhooks/{id}/deliveries`` lists
deliveries newest first, each with every attempt.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from broadcaster.api.common import json_response, query_int, remote_of
from broadcaster.appkeys import DB, SETTINGS
from broadcaster.areas import RANKS, check_code
from broadcaster.auth.tokens import require
from broadcaster.clock import format_ts
from broadcaster.errors import NotFound, Unprocessable
from broadcaster.store import areas as areas_store
from broadcaster.store import webhooks as store
from broadcaster.store.outbox import attempts_of
from broadcaster.store.timeline import audit_row
from broadcaster.store.webhooks import CHANNEL
from broadcaster.web.fields import Field, check_object
from broadcaster.web.jsonbody import read_object

from ..delivery.outbox import outbox_of
from .send import EVENTS, WebhookSender, enqueue_webhooks
from .ssrf import Guard, Refused, check_registration

MAX_INCIDENTS = 100
MAX_AREAS = 100
PAGE = 50


def _incidents(value: Any) -> Any:
    if value == "*":
        return value
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INCIDENTS:
        raise Unprocessable(
            f"'incidents' must be \"*\" or a list of 1 to {MAX_INCIDENTS} incident ids",
            code="invalid_value",
            field="incidents",
        )
    if not all(isinstance(item, str) for item in value):
        raise Unprocessable(
            "'incidents' must list incident ids", code="invalid_type", field="incidents"
        )
    return sorted(set(value))


def _events(value: list[Any]) -> list[str]:
    if not value or any(item not in EVENTS for item in value):
        raise Unprocessable(
            f"'events' must list one or more of: {', '.join(EVENTS)}",
            code="unknown_event",
            field="events",
        )
    return sorted(set(value))


def _areas(value: list[Any]) -> list[str]:
    if not 1 <= len(value) <= MAX_AREAS or not all(isinstance(item, str) for item in value):
        raise Unprocessable(
            f"'areas' must be a list of 1 to {MAX_AREAS} area codes",
            code="invalid_value",
            field="areas",
        )
    return sorted({check_code(item, "areas") for item in value})


WEBHOOK_FIELDS = (
    Field("url", "line", required=True, max_len=2000),
    Field("incidents", "any", nullable=False, check=_incidents),
    Field("events", "list", nullable=False, check=_events),
    Field("description", "line", max_len=200),
    Field("areas", "list", check=_areas),
    Field("min_severity", "line", choices=tuple(RANKS)),
)


def webhook_dict(row: Any) -> dict[str, Any]:
    """Return an endpoint as the API shows it (never with its secret)."""
    failing = row["failing_since"]
    return {
        "id": row["id"],
        "url": row["url"],
        "incidents": json.loads(row["incidents"]),
        "areas": json.loads(row["areas"]) if row["areas"] else None,
        "min_severity": row["min_severity"],
        "events": json.loads(row["events"]),
        "description": row["description"],
        "status": row["status"],
        "disabled_reason": row["disabled_reason"],
        "status_changed_at": row["status_changed_at"],
        "failing_since": format_ts(_utc(failing)) if failing else None,
        "last_success_at": row["last_success_at"],
        "created_at": row["created_at"],
        "created_by": json.loads(row["created_by"]),
    }


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _webhook_id(request: web.Request) -> int:
    raw = request.match_info["webhook"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound(f"no webhook {raw!r}", code="webhook_not_found")
    return int(raw)


def _row(conn: Any, webhook_id: int) -> Any:
    row = store.get(conn, webhook_id)
    if row is None:
        raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
    return row


async def create_webhook(request: web.Request) -> web.Response:
    actor = await require(request, "admin")
    fields = check_object(await read_object(request), WEBHOOK_FIELDS)
    settings = request.app[SETTINGS]
    try:
        url = await check_registration(Guard(settings.webhook_allow), fields["url"], None)
    except Refused as exc:
        raise Unprocessable(str(exc), code=exc.code, field="url") from None
    incidents = fields.get("incidents", "*")
    events = fields.get("events", ["entry.created"])
    areas = fields.get("areas")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    remote = remote_of(request)

    def job(conn: Any) -> dict[str, Any]:
        unknown = store.unknown_incident(conn, incidents) if incidents != "*" else None
        if unknown is not None:
            raise Unprocessable(
                f"no incident {unknown!r}", code="unknown_incident", field="incidents"
            )
        known = areas_store.names(conn, areas or [])
        for code in areas or []:
            if code not in known:
                raise Unprocessable(f"no area {code!r}", code="unknown_area", field="areas")
        webhook_id = store.insert(
            conn,
            url=str(url),
            secret=secret,
            incidents=json.dumps(incidents, ensure_ascii=False),
            events=json.dumps(events),
            description=fields.get("description"),
            created_by=json.dumps(actor.public(), ensure_ascii=False),
            areas=json.dumps(areas) if areas else None,
            min_severity=fields.get("min_severity"),
        )
        audit_row(conn, actor, "webhook.create", f"webhook:{webhook_id}", {"url": str(url)}, remote)
        return webhook_dict(_row(conn, webhook_id))

    webhook = await request.app[DB].write(job)
    return json_response(
        {**webhook, "secret": secret},
        status=201,
        headers={"Location": f"/api/webhooks/{webhook['id']}"},
    )


async def list_webhooks(request: web.Request) -> web.Response:
    await require(request, "admin")
    rows = await request.app[DB].read(store.all_endpoints)
    return json_response({"webhooks": [webhook_dict(row) for row in rows]})


async def get_webhook(request: web.Request) -> web.Response:
    await require(request, "admin")
    webhook_id = _webhook_id(request)

    def job(conn: Any) -> dict[str, Any]:
        webhook = webhook_dict(_row(conn, webhook_id))
        webhook["deliveries"] = store.delivery_counts(conn, webhook_id)
        return webhook

    return json_response(await request.app[DB].read(job))


async def delete_webhook(request: web.Request) -> web.Response:
    actor = await require(request, "admin")
    webhook_id = _webhook_id(request)
    remote = remote_of(request)

    def job(conn: Any) -> None:
        row = _row(conn, webhook_id)
        store.delete(conn, webhook_id)
        audit_row(
            conn, actor, "webhook.delete", f"webhook:{webhook_id}", {"url": row["url"]}, remote
        )

    await request.app[DB].write(job)
    return web.Response(status=204)


def _status_handler(status: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        actor = await require(request, "admin")
        webhook_id = _webhook_id(request)
        remote = remote_of(request)

        def job(conn: Any) -> dict[str, Any]:
            _row(conn, webhook_id)
            store.set_status(conn, webhook_id, status, None)
            action = "webhook.resume" if status == "active" else "webhook.pause"
            audit_row(conn, actor, action, f"webhook:{webhook_id}", None, remote)
            return webhook_dict(_row(conn, webhook_id))

        webhook = await request.app[DB].write(job)
        if status == "active":
            outbox_of(request.app).notify()
        return json_response(webhook)

    return handler


async def list_deliveries(request: web.Request) -> web.Response:
    await require(request, "admin")
    webhook_id = _webhook_id(request)
    before = query_int(request, "before", 0, 0, 2**62)
    limit = query_int(request, "limit", PAGE, 1, 500)

    def job(conn: Any) -> list[dict[str, Any]]:
        _row(conn, webhook_id)
        rows = store.deliveries(conn, webhook_id, before, limit)
        attempts = attempts_of(conn, [row["id"] for row in rows])
        return [
            {
                "id": row["id"],
                "message_id": f"msg_{row['id']}",
                "event": row["event"],
                "incident": row["incident"],
                "seq": row["seq"],
                "state": row["state"],
                "next_attempt_at": (
                    format_ts(_utc(row["next_at"])) if row["state"] == "pending" else None
                ),
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
                "last_error": row["last_error"],
                "attempts": attempts[row["id"]],
            }
            for row in rows
        ]

    deliveries = await request.app[DB].read(job)
    return json_response({"deliveries": deliveries})


def setup(app: web.Application) -> None:
    """Add the webhook tables, the outbox enqueuer and sender, and the admin API."""
    settings = app[SETTINGS]
    db = app[DB]
    outbox = outbox_of(app)
    outbox.enqueuers.append(enqueue_webhooks)
    outbox.senders[CHANNEL] = WebhookSender(
        db, settings.webhook_allow, float(settings.delivery_timeout)
    )
    app.router.add_post("/api/webhooks", create_webhook)
    app.router.add_get("/api/webhooks", list_webhooks)
    app.router.add_get("/api/webhooks/{webhook}", get_webhook)
    app.router.add_delete("/api/webhooks/{webhook}", delete_webhook)
    app.router.add_post("/api/webhooks/{webhook}/pause", _status_handler("paused"))
    app.router.add_post("/api/webhooks/{webhook}/resume", _status_handler("active"))
    app.router.add_get("/api/webhooks/{webhook}/deliveries", list_deliveries)
