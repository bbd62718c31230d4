"""Serve an incident's timeline: post entries, read them, read the signed head."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from ..accountability.figures import check_figures
from ..appkeys import DB, PUBLISHER, SETTINGS, STORE
from ..auth.tokens import require
from ..errors import Conflict, NotFound, Unprocessable
from ..log.chain import canonical_json
from ..log.site import keys_document
from ..privacy.review import outcome_of, review_hooks
from ..store import log as log_store
from ..store import tokens as tokens_store
from ..timeline.drafts import Remember, append_unless_held, hold
from ..timeline.model import MAX_PINNED, SEVERITIES, Actor, NewEntry
from ..timeline.rules import AppendCheck, Head
from ..web.fields import Field, check_object
from ..web.jsonbody import read_object
from .common import (
    entry_created,
    incident_or_404,
    json_response,
    query_int,
    remote_of,
    seq_param,
)
from .incidents import ADVICE_MAX


def check_pinned(value: list[Any]) -> list[int]:
    """Check ``pinned``: distinct entry numbers, at most ``MAX_PINNED``, in the editor's order."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok or len(set(value)) != len(value) or len(value) > MAX_PINNED:
        raise Unprocessable(
            f"'pinned' must list at most {MAX_PINNED} distinct entry numbers",
            code="invalid_value",
            field="pinned",
        )
    return value


ENTRY_FIELDS = (
    Field("body", "text", nullable=False, max_len=20_000),
    Field("kind", "line", nullable=False, choices=("update", "correction", "status")),
    Field("corrects", "int", low=1),
    Field("status", "line", choices=("active", "resolved")),
    Field("sms", "bool", nullable=False),
    Field("event_time", "time"),
    Field("figures", "object", check=check_figures),
    Field("update_interval_minutes", "int", low=1, high=7 * 24 * 60),
    Field("severity", "line", choices=SEVERITIES),
    Field("advice", "line", max_len=ADVICE_MAX),
    Field("summary", "text", max_len=20_000),
    Field("area", "line", max_len=200),
    Field("pinned", "list", check=check_pinned),
    Field("mask", "bool", nullable=False),
    Field("acknowledge", "object"),
)
MAX_PAGE = 1000
#: A page of entries stops after this many bytes of JSON (at least one entry).
PAGE_BYTES = 2 * 1024 * 1024
#: Answers bigger than this are compressed for clients that accept it.
COMPRESS_FROM = 1024


class Replayed(Exception):
    """The same Idempotency-Key was seen before: answer what was answered then."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


def new_entry_from(fields: dict[str, Any]) -> tuple[NewEntry, dict[str, Any]]:
    """Split checked request fields into the entry and the review options."""
    options: dict[str, Any] = {k: fields.pop(k) for k in ("mask", "acknowledge") if k in fields}
    return NewEntry(**fields), options


def idempotency(actor: Actor, key: str, payload: dict[str, Any]) -> tuple[AppendCheck, Remember]:
    """Return a check and a recorder of the answer that make a keyed POST happen at most once."""
    fingerprint = hashlib.sha256(canonical_json(payload)).hexdigest()

    token_id = actor.token_id or 0

    def check(conn: Any, incident: Any, new: NewEntry) -> None:
        row = tokens_store.answer(conn, token_id, key)
        if row is None:
            return
        if row["fingerprint"] != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used for a different request",
                code="idempotency_key_reused",
            )
        raise Replayed(row["status"], row["body"])

    def remember(conn: Any, status: int, body: str, at: str) -> None:
        tokens_store.remember(conn, token_id, key, fingerprint, status, body, at)

    return check, remember


async def post_entry(request: web.Request) -> web.Response:
    actor = await require(request, "editor")
    payload = await read_object(request)
    fields = check_object(payload, ENTRY_FIELDS)
    fields.setdefault("kind", "update")
    fields.setdefault("body", "")
    incident_id = request.match_info["incident"]
    if fields.get("severity") is not None and "sms" not in fields:
        # An escalation or de-escalation reaches SMS subscribers unless the editor says not.
        incident = await incident_or_404(request, incident_id)
        fields["sms"] = fields["severity"] != incident["severity"]
    new, options = new_entry_from(fields)
    publisher = request.app[PUBLISHER]
    new = publisher.review(new, options, actor)
    checks: tuple[Any, ...] = ()
    hooks: tuple[Any, ...] = review_hooks(options, actor, remote_of(request))
    remember: Remember | None = None
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 200 or not key.isprintable():
            raise Unprocessable(
                "Idempotency-Key must be 1-200 printable characters",
                code="invalid_idempotency_key",
                field="Idempotency-Key",
            )
        check, keep = idempotency(actor, key, {"incident": incident_id, **payload})
        checks, remember = (check,), keep
        hooks = (*hooks, lambda c, _, e: keep(c, 201, e.to_json(), e.record["posted_at"]))
    try:
        entry = await append_unless_held(
            request.app,
            incident_id,
            new,
            actor,
            remote=remote_of(request),
            checks=checks,
            hooks=hooks,
        )
        if entry is not None:
            return entry_created(entry)
        held = await hold(
            request.app,
            incident_id,
            new,
            actor,
            outcome=outcome_of(options),
            remote=remote_of(request),
            checks=checks,
            remember=remember,
        )
        return json_response(held, status=202, headers={"Location": held["url"]})
    except Replayed as replay:
        return web.Response(
            text=replay.body,
            status=replay.status,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )


async def list_entries(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    after = query_int(request, "after", 0, 0, 10**12)
    limit = query_int(request, "limit", MAX_PAGE, 1, MAX_PAGE)
    entries = await request.app[STORE].entries(incident["id"], after, limit)
    parts: list[str] = []
    used = 0
    for entry in entries:
        text = entry.to_json()
        used += len(text)
        if used > PAGE_BYTES and parts:
            break
        parts.append(text)
    last = entries[len(parts) - 1].seq if parts else after
    more = last < incident["head"]["seq"]
    body = (
        '{"entries":['
        + ",".join(parts)
        + '],"head":'
        + json.dumps(incident["head"])
        + ',"more":'
        + json.dumps(more)
        + "}"
    )
    response = web.Response(text=body, content_type="application/json")
    if len(body) > COMPRESS_FROM:
        response.enable_compression()  # large bodies are compressed in aiohttp's executor
    return response


async def get_entry(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    seq = seq_param(request)
    entry = await request.app[STORE].entry(incident["id"], seq)
    if entry is None:
        raise NotFound(f"no entry #{seq} in {incident['id']!r}", code="entry_not_found")
    return web.Response(text=entry.to_json(), content_type="application/json")


async def get_checkpoint(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    checkpoint = await request.app[STORE].checkpoint(incident["id"])
    if checkpoint is None:
        raise NotFound(
            "nothing is signed before the first entry",
            code="no_checkpoint",
            head=Head(0, incident["head"]["hash"]).to_dict(),
        )
    return json_response(checkpoint)


async def get_keys(request: web.Request) -> web.Response:
    """Return every key the site has used, with its period (the log announces each change)."""
    rows = await request.app[DB].read(log_store.key_rows)
    document = keys_document(request.app[SETTINGS].origin, rows)
    return json_response(
        document, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/incidents/{incident}/entries", post_entry)
    app.router.add_get("/api/incidents/{incident}/entries", list_entries)
    app.router.add_get("/api/incidents/{incident}/entries/{seq}", get_entry)
    app.router.add_get("/api/incidents/{incident}/checkpoint", get_checkpoint)
    app.router.add_get("/.well-known/broadcaster-keys.json", get_keys)
