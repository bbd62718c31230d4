"""Build timeline entries: the rules every append obeys, whatever the store.

``build_entry`` is pure: given the incident's current state, its head and a
``NewEntry``, it checks the kind's rules and returns the chained record, its
hash and the content to store. Stores call it inside their atomic append step,
so the state it checks is the state it appends to.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from . import chain, markdown
from .errors import Conflict, Unprocessable
from .model import Actor, Entry, NewEntry

#: A check run inside the append transaction: ``check(conn, incident, new)``.
#: It raises an ``HTTPError`` to refuse; the transaction is then rolled back.
AppendCheck = Callable[[Any, Mapping[str, Any], NewEntry], None]
#: A hook run inside the append transaction after the rows are written.
AppendHook = Callable[[Any, Mapping[str, Any], Entry], None]


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def normalize_text(text: str) -> str:
    """Return ``text`` in the form that is hashed: NFC, ``\\n`` line ends."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def redaction_notice(basis: str, posted_at: str, department: str) -> str:
    """Return the HTML a redacted entry shows instead of its text: basis, department, time."""
    return (
        '<p class="redaction-notice">此内容已依据「'
        + escape(basis)
        + "」删除（"
        + escape(department)
        + "，"
        + escape(posted_at)
        + '）。<span lang="en">Withheld under: '
        + escape(basis)
        + "</span></p>"
    )


def check_kind_rules(incident: Mapping[str, Any], head: Head, new: NewEntry) -> None:
    """Refuse combinations of kind, ``corrects``, ``status`` that make no sense."""
    if new.kind == "correction":
        if new.corrects is None:
            raise Unprocessable(
                "a correction must name the seq it corrects in 'corrects'",
                code="corrects_required",
                field="corrects",
            )
        if not 1 <= new.corrects <= head.seq:
            raise Unprocessable(
                f"'corrects' must name an existing entry (1..{head.seq})",
                code="corrects_unknown",
                field="corrects",
            )
    elif new.corrects is not None:
        raise Unprocessable(
            "'corrects' is only allowed on a correction",
            code="corrects_not_allowed",
            field="corrects",
        )
    if new.kind == "status":
        if new.status is None and new.update_interval_minutes is None:
            raise Unprocessable(
                "a status entry must carry 'status'", code="status_required", field="status"
            )
        unchanged_status = new.status is None or new.status == incident["status"]
        unchanged_interval = (
            new.update_interval_minutes is None
            or new.update_interval_minutes == incident["update_interval_minutes"]
        )
        if unchanged_status and unchanged_interval:
            raise Conflict(f"the incident is already {incident['status']}", code="status_unchanged")
    else:
        if new.status is not None:
            raise Unprocessable(
                "'status' is only allowed on a status entry",
                code="status_not_allowed",
                field="status",
            )
        if new.update_interval_minutes is not None:
            raise Unprocessable(
                "'update_interval_minutes' is only allowed on a status entry",
                code="interval_not_allowed",
                field="update_interval_minutes",
            )
    if new.kind not in ("status", "redaction") and not new.body.strip():
        raise Unprocessable("'body' must not be empty", code="body_required", field="body")


def build_entry(
    incident: Mapping[str, Any], head: Head, new: NewEntry, author: Actor, posted_at: str
) -> Entry:
    """Return the next entry after ``head``: record, hash and content."""
    check_kind_rules(incident, head, new)
    body = normalize_text(new.body)
    salt = secrets.token_hex(16)
    record = {
        "incident": incident["id"],
        "seq": head.seq + 1,
        "kind": new.kind,
        "posted_at": posted_at,
        "event_time": new.event_time,
        "author": new.author or author.public(),
        "corrects": new.corrects,
        "status": new.status,
        "sms": new.sms,
        "figures": new.figures,
        "approved_by": new.approved_by,
        "redacts": new.redacts,
        "question": new.question,
        "update_interval_minutes": new.update_interval_minutes,
        "content_hash": chain.content_hash(salt, body),
        "prev_hash": head.hash,
    }
    return Entry(
        record=record,
        hash=chain.entry_hash(record),
        body=body,
        salt=salt,
        html=markdown.render(body),
    )
