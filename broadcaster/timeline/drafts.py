"""Hold new entries as drafts until a second person approves them (two-person review).

When ``BROADCASTER_REQUIRE_APPROVAL`` is set, or the incident was created with
``"require_approval": true``, ``POST /api/incidents/{id}/entries`` answers
``202 {"draft_id", "status": "pending"}`` instead of appending. The draft
keeps the entry as reviewed (masked text, or text acknowledged with a reason)
and the privacy review's findings, so the approver sees what was found and
how the author resolved it.

* ``POST /api/drafts/{id}/approve`` (reviewer or admin, never the author:
  403 ``self_approval``) appends the entry with ``approved_by`` inside the
  chained record and ``author`` the original author; the draft is marked
  approved in the same transaction, so two approvers racing get one entry
  and one 409.
* ``POST /api/drafts/{id}/reject`` ``{"reason"}`` returns it; nothing is
  published.

"The same person" is the same token or the same name and department, so a
second token issued to the author does not let them approve their own text.
Kind rules and registered append checks (figures) run when the draft is held,
so the author hears of a mistake at once, and again at approval, when the
timeline may have moved on (a 409/422 then leaves the draft pending).
Redactions are never held: withdrawing exposed personal data must not wait.
When an approved entry is redacted, its draft's copy of the body is erased too.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ..api.common import entry_created, json_response, query_int, remote_of
from ..appkeys import DB, PUBLISHER, SETTINGS, STORE
from ..auth.tokens import require
from ..clock import format_ts, now
from ..errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from ..privacy.review import Outcome
from ..store import drafts as drafts_store
from ..store.timeline import TimelineStore, audit_row, incident_dict
from ..web.fields import Field, check_object
from ..web.jsonbody import read_object
from .markdown import render
from .model import Actor, Entry, NewEntry
from .rules import AppendCheck, AppendHook, Head, check_kind_rules

#: The members of a ``NewEntry`` a draft keeps; author and approver are set at approval.
ENTRY_MEMBERS = (
    "kind", "body", "corrects", "status", "sms", "event_time", "figures", "redacts",
    "question", "update_interval_minutes", "severity", "advice", "summary", "area", "pinned",
)  # fmt: skip
#: A held incident (``"kind": "incident"``) keeps the creation request's fields.
INCIDENT_KIND = "incident"
STATUSES = ("pending", "approved", "rejected")
DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REJECT_FIELDS = (Field("reason", "text", required=True, nullable=False, max_len=2000),)
#: ``remember(conn, status, body, at)`` stores an idempotent answer (see ``api.entries``).
Remember = Callable[[Any, int, str, str], None]


def draft_target(incident_id: str, draft_id: str) -> str:
    return f"{incident_id}/drafts/{draft_id}"


def same_person(actor: Actor, row: Mapping[str, Any]) -> bool:
    """Tell whether ``actor`` wrote the draft: same token, or same name and department."""
    if actor.token_id is not None and actor.token_id == row["author_token"]:
        return True
    return (actor.name, actor.department) == (row["author_name"], row["author_department"])


def draft_dict(row: Mapping[str, Any], viewer: Actor) -> dict[str, Any]:
    """Return a draft as the API serves it to ``viewer`` (``mine``: they wrote it)."""
    entry = json.loads(row["entry"])
    review = json.loads(row["review"])
    return {
        "id": row["id"],
        "incident": row["incident"],
        "status": row["status"],
        "created_at": row["created_at"],
        "author": {"name": row["author_name"], "department": row["author_department"]},
        "entry": {**entry, "html": render(entry.get("body") or entry.get("summary") or "")},
        "findings": review.get("findings", []),
        "acknowledgement": review.get("acknowledgement"),
        "decided_at": row["decided_at"],
        "decided_by": json.loads(row["decided_by"]) if row["decided_by"] else None,
        "reason": row["reason"],
        "published": _published(row, entry),
        "redacted": bool(row["redacted"]),
        "mine": same_person(viewer, row),
    }


def _published(row: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return where an approved draft is public: its entry, or the incident it created."""
    if row["status"] != "approved":
        return None
    if entry.get("kind") == INCIDENT_KIND:
        return {"seq": 0, "url": f"/incidents/{row['incident']}"}
    return {"seq": row["seq"], "url": f"/incidents/{row['incident']}/entries/{row['seq']}"}


class _TakesDrafts(Exception):
    """Raised inside an append: the incident takes drafts (two-person review), not entries."""


def _refuse_unreviewed(conn: Any, incident: Mapping[str, Any], new: NewEntry) -> None:
    if incident["require_approval"]:
        raise _TakesDrafts


async def append_unless_held(
    app: web.Application,
    incident_id: str,
    new: NewEntry,
    actor: Actor,
    *,
    remote: str | None,
    checks: tuple[AppendCheck, ...] = (),
    hooks: tuple[AppendHook, ...] = (),
) -> Entry | None:
    """Append ``new``, or return ``None`` if its incident's entries wait for a second person.

    The incident's setting is checked inside the append's transaction, on the
    row it locks, so that a post needs no read of its own before the write
    (one step less before viewers see it) and never races a change of it.
    """
    if app[SETTINGS].require_approval:
        return None
    try:
        entry, _ = await app[PUBLISHER].append(
            incident_id,
            new,
            actor,
            remote=remote,
            checks=(*checks, _refuse_unreviewed),
            hooks=hooks,
        )
    except _TakesDrafts:
        return None
    return entry


async def hold(
    app: web.Application,
    incident_id: str,
    new: NewEntry,
    actor: Actor,
    *,
    outcome: Outcome | None = None,
    remote: str | None = None,
    checks: tuple[AppendCheck, ...] = (),
    remember: Remember | None = None,
) -> dict[str, Any]:
    """Store ``new`` (already reviewed) as a pending draft; return the 202 answer."""
    draft_id = secrets.token_urlsafe(12)
    publisher = app[PUBLISHER]
    entry = {name: getattr(new, name) for name in ENTRY_MEMBERS}
    review = outcome.to_dict() if outcome else {"findings": [], "acknowledgement": None}

    def job(conn: Any) -> dict[str, Any]:
        row = drafts_store.incident(conn, incident_id)
        if row is None:
            raise NotFound(f"no incident {incident_id!r}", code="incident_not_found")
        incident = incident_dict(row)
        for check in (*checks, *publisher.checks):
            check(conn, incident, new)
        check_kind_rules(incident, Head(row["head_seq"], row["head_hash"]), new)
        created_at = format_ts(now())
        drafts_store.insert(
            conn,
            draft_id,
            incident_id,
            created_at,
            (actor.name, actor.department, actor.token_id),
            json.dumps(entry, ensure_ascii=False),
            json.dumps(review, ensure_ascii=False),
        )
        target = draft_target(incident_id, draft_id)
        audit_row(conn, actor, "draft.create", target, {"kind": new.kind}, remote)
        if outcome is not None:
            outcome.audit(conn, actor, target, remote)
        answer = {
            "draft_id": draft_id,
            "status": "pending",
            "incident": incident_id,
            "url": f"/api/drafts/{draft_id}",
        }
        if remember is not None:
            remember(conn, 202, json.dumps(answer, ensure_ascii=False), created_at)
        return answer

    return await app[DB].write(job)


async def hold_incident(
    app: web.Application, fields: dict[str, Any], actor: Actor, *, remote: str | None = None
) -> dict[str, Any]:
    """Hold a new incident (already reviewed) as a pending draft; return the 202 answer.

    Its id and SMS code are chosen now, so the draft names the incident it will
    create; nothing of it is public before approval (a clash then answers 409
    and the draft stays pending).
    """
    draft_id = secrets.token_urlsafe(12)

    def job(conn: Any) -> dict[str, Any]:
        chosen = dict(fields)
        created_at = format_ts(now())
        chosen["code"] = chosen.get("code") or TimelineStore.free_code(conn)
        chosen["id"] = chosen.get("id") or TimelineStore.free_id(conn, chosen["code"], created_at)
        if drafts_store.incident(conn, chosen["id"]) is not None:
            raise Conflict(f"incident id {chosen['id']!r} is taken", code="id_taken", field="id")
        entry = {"kind": INCIDENT_KIND, **chosen}
        review: dict[str, Any] = {"findings": [], "acknowledgement": None}
        drafts_store.insert(
            conn,
            draft_id,
            chosen["id"],
            created_at,
            (actor.name, actor.department, actor.token_id),
            json.dumps(entry, ensure_ascii=False),
            json.dumps(review, ensure_ascii=False),
        )
        target = draft_target(chosen["id"], draft_id)
        audit_row(conn, actor, "draft.create", target, {"kind": INCIDENT_KIND}, remote)
        return {
            "draft_id": draft_id,
            "status": "pending",
            "incident": chosen["id"],
            "url": f"/api/drafts/{draft_id}",
        }

    return await app[DB].write(job)


async def _approve_incident(
    request: web.Request, row: Mapping[str, Any], actor: Actor, draft_id: str
) -> web.Response:
    """Create the incident a draft holds, marking the draft approved in the same transaction."""
    stored = json.loads(row["entry"])
    fields = {k: v for k, v in stored.items() if k != "kind"}
    author = Actor(row["author_name"], row["author_department"], "editor", row["author_token"])
    remote = remote_of(request)
    target = draft_target(row["incident"], draft_id)

    def mark_approved(conn: Any, incident: Mapping[str, Any]) -> None:
        _pending(_draft_row(conn, draft_id))
        by = json.dumps(actor.public(), ensure_ascii=False)
        drafts_store.approve(conn, draft_id, incident["created_at"], by, 0)
        detail = {"incident": incident["id"], "author": author.public()}
        audit_row(conn, actor, "draft.approve", target, detail, remote)

    incident = await request.app[STORE].create_incident(
        fields, author, remote, hooks=(mark_approved,)
    )
    return json_response(
        {**incident, "approved_by": actor.public()},
        status=201,
        headers={"Location": f"/api/incidents/{incident['id']}"},
    )


def _draft_id(request: web.Request) -> str:
    draft_id = request.match_info["draft"]
    if not DRAFT_ID.match(draft_id):
        raise NotFound(f"no draft {draft_id!r}", code="draft_not_found")
    return draft_id


def _draft_row(conn: Any, draft_id: str) -> Mapping[str, Any]:
    row = drafts_store.one(conn, draft_id)
    if row is None:
        raise NotFound(f"no draft {draft_id!r}", code="draft_not_found")
    return row


def _pending(row: Mapping[str, Any]) -> None:
    if row["status"] != "pending":
        raise Conflict(
            f"the draft is already {row['status']}", code="draft_not_pending", status=row["status"]
        )


async def list_drafts(request: web.Request) -> web.Response:
    actor = await require(request, "editor")
    status = request.query.get("status", "pending")
    if status not in (*STATUSES, "all"):
        raise BadRequest(
            "query parameter 'status' must be pending, approved, rejected or all",
            code="invalid_query",
            field="status",
        )
    limit = query_int(request, "limit", 100, 1, 500)
    # Editors see their own drafts only: someone else's text is not theirs to read yet.
    author = None if actor.can("reviewer") else (actor.token_id, actor.name, actor.department)

    def job(conn: Any) -> list[dict[str, Any]]:
        rows = drafts_store.listed(
            conn,
            status=None if status == "all" else status,
            incident=request.query.get("incident") or None,
            author=author,
            limit=limit,
        )
        return [draft_dict(row, actor) for row in rows]

    viewer = {**actor.public(), "role": actor.role}
    return json_response({"drafts": await request.app[DB].read(job), "viewer": viewer})


async def get_draft(request: web.Request) -> web.Response:
    actor = await require(request, "editor")
    draft_id = _draft_id(request)
    row = await request.app[DB].read(lambda conn: _draft_row(conn, draft_id))
    if not actor.can("reviewer") and not same_person(actor, row):
        raise NotFound(f"no draft {draft_id!r}", code="draft_not_found")
    return json_response(draft_dict(row, actor))


async def _no_fields(request: web.Request) -> None:
    """Accept no body or ``{}``; any member is unknown (422)."""
    if request.can_read_body:
        check_object(await read_object(request), ())


async def approve(request: web.Request) -> web.Response:
    actor = await require(request, "reviewer")
    await _no_fields(request)
    draft_id = _draft_id(request)
    row = await request.app[DB].read(lambda conn: _draft_row(conn, draft_id))
    if same_person(actor, row):
        raise Forbidden("nobody approves their own draft", code="self_approval")
    _pending(row)
    if json.loads(row["entry"]).get("kind") == INCIDENT_KIND:
        return await _approve_incident(request, row, actor, draft_id)
    remote = remote_of(request)
    stored = json.loads(row["entry"])
    author = {"name": row["author_name"], "department": row["author_department"]}
    new = NewEntry(**stored, author=author, approved_by=actor.public())
    target = draft_target(row["incident"], draft_id)

    def still_pending(conn: Any, incident: Mapping[str, Any], _: NewEntry) -> None:
        _pending(_draft_row(conn, draft_id))

    def mark_approved(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
        by = json.dumps(actor.public(), ensure_ascii=False)
        drafts_store.approve(conn, draft_id, entry.record["posted_at"], by, entry.seq)
        detail = {"seq": entry.seq, "author": author}
        audit_row(conn, actor, "draft.approve", target, detail, remote)

    entry, _ = await request.app[PUBLISHER].append(
        row["incident"], new, actor, remote=remote, checks=(still_pending,), hooks=(mark_approved,)
    )
    return entry_created(entry)


async def reject(request: web.Request) -> web.Response:
    actor = await require(request, "reviewer")
    reason = check_object(await read_object(request), REJECT_FIELDS)["reason"].strip()
    if not reason:
        raise Unprocessable(
            "say why the draft is returned in 'reason'", code="reason_required", field="reason"
        )
    draft_id = _draft_id(request)
    remote = remote_of(request)

    def job(conn: Any) -> dict[str, Any]:
        row = _draft_row(conn, draft_id)
        _pending(row)
        by = json.dumps(actor.public(), ensure_ascii=False)
        rejected = drafts_store.reject(conn, draft_id, format_ts(now()), by, reason)
        target = draft_target(row["incident"], draft_id)
        audit_row(conn, actor, "draft.reject", target, {"reason": reason}, remote)
        return draft_dict(rejected, actor)

    return json_response(await request.app[DB].write(job))


def forget_redacted(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
    """Erase the draft copy of an entry's body when a redaction entry withdraws it."""
    if entry.record["kind"] == "redaction" and entry.record["redacts"]:
        drafts_store.erase_body(conn, entry.incident, entry.record["redacts"])


def setup(app: web.Application) -> None:
    app[PUBLISHER].hooks.append(forget_redacted)
    app.router.add_get("/api/drafts", list_drafts)
    app.router.add_get("/api/drafts/{draft}", get_draft)
    app.router.add_post("/api/drafts/{draft}/approve", approve)
    app.router.add_post("/api/drafts/{draft}/reject", reject)
