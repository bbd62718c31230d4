"""Withdraw an entry's text under a stated legal basis, while the chain still verifies.

``POST /api/incidents/{id}/entries/{seq}/redact`` (admin)
``{"basis": "政府信息公开条例第十五条", "reason": "..."}`` appends a ``redaction``
entry (``"redacts": seq``, its body stating basis and reason) and, in the same
transaction, records the redaction and DELETEs the redacted entry's row in
``contents`` (body and salt). The chained record is untouched, so
its ``content_hash`` and ``hash`` stay and ``verify`` passes; without the salt
nobody can confirm a guess at the withheld text (a phone number, say).

The text is gone, not hidden: every surface reads entries through the store,
which serves a redacted entry with an empty body and a notice; stored answers
to replayed ``Idempotency-Key`` POSTs are rewritten to that redacted form;
registered append hooks see the ``redaction`` entry in the same transaction
and erase their own copies (drafts, search index, delivery payloads not yet
sent: each module that keeps text must do so). After the commit the store
erases the old copies underneath (``broadcaster.store.redaction.scrub``):
SQLite's WAL is checkpointed and truncated (the writer runs with
``secure_delete``), PostgreSQL's tables that held the text are VACUUMed.

Refused: unknown entry (404), a redaction entry (409 ``not_redactable``), an
entry already redacted (409 ``already_redacted``). The reason is published
with the redaction, so it goes through the privacy review like any text.
Redactions are never held for two-person review: exposed personal data must
come down at once; the audit log records who did it, from where and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..api.common import remote_of, seq_param
from ..appkeys import DB, PUBLISHER, SETTINGS
from ..auth.tokens import require
from ..errors import Conflict, NotFound, Unprocessable
from ..store import redaction as redaction_store
from ..store import tokens as tokens_store
from ..store.timeline import audit_row, read_entries
from ..timeline.model import Entry, NewEntry
from ..web.fields import Field, check_object
from ..web.jsonbody import read_object
from .review import review_text

REDACT_FIELDS = (
    Field("basis", "line", required=True, nullable=False, max_len=200),
    Field("reason", "text", required=True, nullable=False, max_len=2000),
)


def redaction_body(seq: int, basis: str, reason: str, lang: str) -> str:
    """Return the public text of a redaction entry (markdown), in the service's language."""
    if lang == "en":
        return f"Entry #{seq} has been withheld.\n\nBasis: {basis}\n\nReason: {reason}"
    return f"第{seq}条信息的内容已删除。\n\n依据：{basis}\n\n理由：{reason}"


def _text(fields: dict[str, Any], name: str) -> str:
    value = str(fields[name]).strip()
    if not value:
        raise Unprocessable(f"'{name}' must not be empty", code=f"{name}_required", field=name)
    # Published with the redaction: it must not repeat what is being withdrawn.
    return review_text(value, field=name)


async def redact(request: web.Request) -> web.Response:
    actor = await require(request, "admin")
    fields = check_object(await read_object(request), REDACT_FIELDS)
    basis, reason = _text(fields, "basis"), _text(fields, "reason")
    incident_id = request.match_info["incident"]
    seq = seq_param(request)
    remote = remote_of(request)
    lang = request.app[SETTINGS].lang
    new = NewEntry(kind="redaction", body=redaction_body(seq, basis, reason, lang), redacts=seq)
    target: dict[str, Any] = {}

    def redactable(conn: Any, incident: Mapping[str, Any], _: NewEntry) -> None:
        found = redaction_store.target(conn, incident_id, seq)
        if found is None:
            raise NotFound(f"no entry #{seq} in {incident_id!r}", code="entry_not_found")
        kind, target["content_hash"] = found
        if kind == "redaction":
            raise Conflict("a redaction entry cannot be redacted", code="not_redactable")
        done = redaction_store.redacted_by(conn, incident_id, seq)
        if done is not None:
            raise Conflict(
                f"entry #{seq} was already redacted by #{done}",
                code="already_redacted",
                redaction_seq=done,
            )

    def withdraw(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
        redaction_store.withdraw(
            conn,
            incident_id,
            seq,
            target["content_hash"],
            redaction_seq=entry.seq,
            basis=basis,
            posted_at=entry.record["posted_at"],
            department=actor.department,
        )
        redacted = read_entries(conn, incident_id, seq - 1, 1)[0].to_json()
        tokens_store.rewrite_entry_answers(conn, incident_id, seq, redacted)
        detail = {"basis": basis, "reason": reason, "redaction_seq": entry.seq}
        audit_row(conn, actor, "entry.redact", f"{incident_id}#{seq}", detail, remote)

    entry, _ = await request.app[PUBLISHER].append(
        incident_id, new, actor, remote=remote, checks=(redactable,), hooks=(withdraw,)
    )
    await redaction_store.scrub(request.app[DB])
    return web.Response(
        text=entry.to_json(),
        status=201,
        content_type="application/json",
        headers={"Location": f"/api/incidents/{incident_id}/entries/{entry.seq}"},
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/incidents/{incident}/entries/{seq}/redact", redact)
