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
from datetime import timedelta, timezone
from html import escape
from typing import Any

from ..clock import parse_ts
from ..errors import Conflict, Unprocessable
from ..log import chain
from . import markdown
from .model import STATE_FIELDS, Actor, Entry, NewEntry

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


#: Beijing time, the service's single time zone (no daylight saving).
BEIJING = timezone(timedelta(hours=8))
NOTICE = {
    "zh-CN": (
        "此内容已于 {time}（北京时间）由{department}依据「{basis}」删除。",
        "{y}年{m}月{d}日 {hm}",
    ),
    "en": (
        "Withheld on {time} (Beijing time) by {department} under: {basis}.",
        "{d} {month} {y}, {hm}",
    ),
}
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def notice_text(basis: str, posted_at: str, department: str, lang: str = "zh-CN") -> str:
    """Return the sentence a redacted entry shows instead of its text, in Beijing time."""
    sentence, pattern = NOTICE["en" if lang == "en" else "zh-CN"]
    moment = parse_ts(posted_at).astimezone(BEIJING)
    when = pattern.format(
        y=moment.year,
        m=moment.month,
        d=moment.day,
        month=_MONTHS[moment.month - 1],
        hm=moment.strftime("%H:%M"),
    )
    return sentence.format(time=when, department=department, basis=basis)


def redaction_notice(basis: str, posted_at: str, department: str, lang: str = "zh-CN") -> str:
    """Return the HTML a redacted entry shows instead of its text: basis, department, time."""
    text = notice_text(basis, posted_at, department, lang)
    return f'<p class="redaction-notice">{escape(text)}</p>'


def _refuse(field: str, message: str, code: str) -> Unprocessable:
    return Unprocessable(message, code=code, field=field)


def state_changes(new: NewEntry) -> dict[str, Any]:
    """Return the incident state ``new`` sets: the members of ``STATE_FIELDS`` it carries."""
    return {name: getattr(new, name) for name in STATE_FIELDS if getattr(new, name) is not None}


def _same(current: Any, value: Any) -> bool:
    """Tell whether a state value is unchanged (an absent text equals an empty one)."""
    return (current or "") == value if isinstance(value, str) else current == value


def check_kind_rules(incident: Mapping[str, Any], head: Head, new: NewEntry) -> None:
    """Refuse combinations of kind, ``corrects`` and state fields that make no sense."""
    if new.kind == "correction":
        if new.corrects is None:
            raise _refuse(
                "corrects",
                "a correction must name the seq it corrects in 'corrects'",
                "corrects_required",
            )
        if not 1 <= new.corrects <= head.seq:
            raise _refuse(
                "corrects",
                f"'corrects' must name an existing entry (1..{head.seq})",
                "corrects_unknown",
            )
    elif new.corrects is not None:
        raise _refuse(
            "corrects", "'corrects' is only allowed on a correction", "corrects_not_allowed"
        )
    changes = state_changes(new)
    if new.kind == "status":
        if not changes:
            raise _refuse(
                "status",
                "a status entry must carry at least one of: " + ", ".join(STATE_FIELDS),
                "status_required",
            )
        for seq in new.pinned or ():
            if not 1 <= seq <= head.seq:
                raise _refuse(
                    "pinned",
                    f"'pinned' must name existing entries (1..{head.seq})",
                    "pinned_unknown",
                )
        if all(_same(incident.get(name), value) for name, value in changes.items()):
            raise Conflict(
                "the status entry changes nothing: the incident already has these values",
                code="status_unchanged",
            )
    elif changes:
        name = next(iter(changes))
        code = {"status": "status_not_allowed", "update_interval_minutes": "interval_not_allowed"}
        raise _refuse(
            name, f"'{name}' is only allowed on a status entry", code.get(name, "state_not_allowed")
        )
    if new.kind not in ("status", "redaction") and not new.body.strip():
        raise _refuse("body", "'body' must not be empty", "body_required")


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
        "severity": new.severity,
        "advice": new.advice,
        "summary": new.summary,
        "area": new.area,
        "pinned": new.pinned,
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
