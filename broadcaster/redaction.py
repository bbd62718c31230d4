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
sent: each module that keeps text must do so). In the SQLite file the writer
connection runs with ``secure_delete`` and, after the commit, the WAL is
checkpointed and truncated so no older page image keeps the text either.

Refused: unknown entry (404), a redaction entry (409 ``not_redactable``), an
entry already redacted (409 ``already_redacted``). The reason is published
with the redaction, so it goes through the privacy review like any text.
Redactions are never held for two-person review: exposed personal data must
come down at once; the audit log records who did it, from where and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from .api.common import remote_of, seq_param
from .appkeys import DB, PUBLISHER, SETTINGS
from .auth import require
from .errors import Conflict, NotFound, Unprocessable
from .fields import Field, check_object
from .jsonbody import read_object
from .model import Entry, NewEntry
from .review import review_text
from .store.sqlite import Database
from .store.timeline import audit_row, read_entries

log = logging.getLogger(__name__)

REDACT_FIELDS = (
    Field("basis", "line", required=True, nullable=False, max_len=200),
    Field("reason", "text", required=True, nullable=False, max_len=2000),
)
CHECKPOINT_ATTEMPTS = 3


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


def truncate_wal(path: Path) -> bool:
    """Checkpoint the WAL into the database and truncate it; True when it completed."""
    conn = sqlite3.connect(path, timeout=2, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    finally:
        conn.close()


async def scrub_wal(path: Path) -> None:
    """Keep trying to truncate the WAL for a short while; a busy store delays it, no more."""
    for attempt in range(CHECKPOINT_ATTEMPTS):
        try:
            if await asyncio.to_thread(truncate_wal, path):
                return
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint after a redaction failed: %s", exc)
        await asyncio.sleep(0.05 * 2**attempt)
    log.warning("WAL still busy after a redaction; the next checkpoint overwrites it")


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

    def redactable(conn: sqlite3.Connection, incident: Mapping[str, Any], _: NewEntry) -> None:
        row = conn.execute(
            "SELECT kind, record FROM entries WHERE incident = ? AND seq = ?", (incident_id, seq)
        ).fetchone()
        if row is None:
            raise NotFound(f"no entry #{seq} in {incident_id!r}", code="entry_not_found")
        if row["kind"] == "redaction":
            raise Conflict("a redaction entry cannot be redacted", code="not_redactable")
        done = conn.execute(
            "SELECT redaction_seq FROM redactions WHERE incident = ? AND seq = ?",
            (incident_id, seq),
        ).fetchone()
        if done is not None:
            raise Conflict(
                f"entry #{seq} was already redacted by #{done[0]}",
                code="already_redacted",
                redaction_seq=done[0],
            )
        target["content_hash"] = json.loads(row["record"])["content_hash"]

    def withdraw(conn: sqlite3.Connection, incident: Mapping[str, Any], entry: Entry) -> None:
        conn.execute(
            "INSERT INTO redactions (incident, seq, redaction_seq, basis, posted_at, department)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, seq, entry.seq, basis, entry.record["posted_at"], actor.department),
        )
        conn.execute("DELETE FROM contents WHERE content_hash = ?", (target["content_hash"],))
        redacted = read_entries(conn, incident_id, seq - 1, 1)[0].to_json()
        conn.execute(
            "UPDATE idempotency SET body = ? WHERE status = 201 AND json_valid(body)"
            " AND json_extract(body, '$.incident') = ? AND json_extract(body, '$.seq') = ?",
            (redacted, incident_id, seq),
        )
        detail = {"basis": basis, "reason": reason, "redaction_seq": entry.seq}
        audit_row(conn, actor, "entry.redact", f"{incident_id}#{seq}", detail, remote)

    entry, _ = await request.app[PUBLISHER].append(
        incident_id, new, actor, remote=remote, checks=(redactable,), hooks=(withdraw,)
    )
    db = request.app[DB]
    if isinstance(db, Database):
        await scrub_wal(db.path)
    return web.Response(
        text=entry.to_json(),
        status=201,
        content_type="application/json",
        headers={"Location": f"/api/incidents/{incident_id}/entries/{entry.seq}"},
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/incidents/{incident}/entries/{seq}/redact", redact)
