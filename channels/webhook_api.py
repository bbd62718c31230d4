"""Serve ``/api/webhooks`` (admin): register, list, read, delete, pause and resume endpoints.

The signing secret is returned once, in the ``201`` of the registration, and
never again. URLs are checked against the SSRF guard when registered (and
again at every send, in ``channels.webhooks``): an internal address answers
``422`` with the guard's code (``url_forbidden_address``, ``url_ambiguous_ip``,
``url_unresolvable``, ...). ``GET /api/webhooks/{id}/deliveries`` lists
deliveries newest first, each with every attempt.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from broadcaster.api.common import json_response, query_int, remote_of
from broadcaster.appkeys import DB, SETTINGS
from broadcaster.auth import require
from broadcaster.clock import format_ts, now
from broadcaster.errors import NotFound, Unprocessable
from broadcaster.fields import Field, check_object
from broadcaster.jsonbody import read_object
from broadcaster.store.timeline import audit_row

from .outbox import attempts_of, outbox_of
from .ssrf import Guard, Refused, check_registration
from .webhooks import (
    CHANNEL,
    EVENTS,
    WebhookSender,
    enqueue_webhooks,
    set_status,
)

MAX_INCIDENTS = 100
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


WEBHOOK_FIELDS = (
    Field("url", "line", required=True, max_len=2000),
    Field("incidents", "any", nullable=False, check=_incidents),
    Field("events", "list", nullable=False, check=_events),
    Field("description", "line", max_len=200),
)


def webhook_dict(row: sqlite3.Row) -> dict[str, Any]:
    """Return an endpoint as the API shows it (never with its secret)."""
    failing = row["failing_since"]
    return {
        "id": row["id"],
        "url": row["url"],
        "incidents": json.loads(row["incidents"]),
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


def _row(conn: sqlite3.Connection, webhook_id: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
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
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    remote = remote_of(request)

    def job(conn: sqlite3.Connection) -> dict[str, Any]:
        if incidents != "*":
            for incident in incidents:
                if not conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident,)).fetchone():
                    raise Unprocessable(
                        f"no incident {incident!r}", code="unknown_incident", field="incidents"
                    )
        cur = conn.execute(
            "INSERT INTO webhooks (url, secret, incidents, events, description, created_at,"
            " created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                str(url),
                secret,
                json.dumps(incidents, ensure_ascii=False),
                json.dumps(events),
                fields.get("description"),
                format_ts(now()),
                json.dumps(actor.public(), ensure_ascii=False),
            ),
        )
        webhook_id = int(cur.lastrowid or 0)
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
    rows = await request.app[DB].read(
        lambda c: c.execute("SELECT * FROM webhooks ORDER BY id").fetchall()
    )
    return json_response({"webhooks": [webhook_dict(row) for row in rows]})


async def get_webhook(request: web.Request) -> web.Response:
    await require(request, "admin")
    webhook_id = _webhook_id(request)

    def job(conn: sqlite3.Connection) -> dict[str, Any]:
        webhook = webhook_dict(_row(conn, webhook_id))
        counts = conn.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE channel = ? AND target = ?"
            " GROUP BY state",
            (CHANNEL, webhook_id),
        ).fetchall()
        webhook["deliveries"] = {state: count for state, count in counts}
        return webhook

    return json_response(await request.app[DB].read(job))


async def delete_webhook(request: web.Request) -> web.Response:
    actor = await require(request, "admin")
    webhook_id = _webhook_id(request)
    remote = remote_of(request)

    def job(conn: sqlite3.Connection) -> None:
        row = _row(conn, webhook_id)
        conn.execute(
            "DELETE FROM deliveries WHERE channel = ? AND target = ?", (CHANNEL, webhook_id)
        )
        conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
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

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            _row(conn, webhook_id)
            set_status(conn, webhook_id, status, None)
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

    def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        _row(conn, webhook_id)
        rows = conn.execute(
            "SELECT id, event, incident, seq, state, attempts, next_at, created_at,"
            " updated_at, last_error FROM deliveries WHERE channel = ? AND target = ?"
            " AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
            (CHANNEL, webhook_id, before, before, limit),
        ).fetchall()
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
