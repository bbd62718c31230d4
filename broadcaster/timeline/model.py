"""Describe what the timeline holds: actors, new entries, entries as served."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KINDS = ("update", "correction", "status", "redaction", "answer")
STATUSES = ("active", "resolved")
SEVERITIES = ("extreme", "severe", "moderate", "minor")
ROLES = ("editor", "reviewer", "admin")

#: Order of the members of an entry as served (the contract's order).
ENTRY_ORDER = (
    "incident", "seq", "kind", "posted_at", "event_time", "author", "body", "html",
    "corrects", "status", "sms", "figures", "approved_by", "redacts", "question",
    "update_interval_minutes", "severity", "advice", "summary", "area", "pinned",
    "salt", "content_hash", "prev_hash", "hash", "redacted", "corrected_by",
)  # fmt: skip
#: The incident state a ``status`` entry may change; a member it leaves alone is ``null``.
STATE_FIELDS = (
    "status", "severity", "advice", "summary", "area", "update_interval_minutes", "pinned",
)  # fmt: skip
#: At most this many entries are pinned as key events at once.
MAX_PINNED = 8


@dataclass(frozen=True)
class Actor:
    """Who is acting: a token's name, department and role."""

    name: str
    department: str
    role: str
    token_id: int | None = None

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def public(self) -> dict[str, str]:
        return {"name": self.name, "department": self.department}


@dataclass(frozen=True)
class NewEntry:
    """An entry as asked for, before the timeline gives it a seq and hashes."""

    kind: str = "update"
    body: str = ""
    corrects: int | None = None
    status: str | None = None
    sms: bool = False
    event_time: str | None = None
    figures: dict[str, int] | None = None
    approved_by: dict[str, str] | None = None
    redacts: int | None = None
    question: dict[str, Any] | None = None
    update_interval_minutes: int | None = None
    severity: str | None = None
    advice: str | None = None
    summary: str | None = None
    area: str | None = None
    pinned: list[int] | None = None
    author: dict[str, str] | None = None


@dataclass(frozen=True)
class Entry:
    """One committed timeline entry: the chained record plus its (removable) content."""

    record: dict[str, Any]
    hash: str
    body: str
    salt: str | None
    html: str
    redacted: bool = False
    #: Seqs of the corrections naming this entry (read from the timeline, not hashed).
    corrected_by: tuple[int, ...] = ()
    #: ``{"basis", "posted_at", "department", "seq"}`` of the redaction that withdrew the text.
    redaction: dict[str, Any] | None = field(default=None, compare=False)
    _json: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def incident(self) -> str:
        return self.record["incident"]

    @property
    def seq(self) -> int:
        return self.record["seq"]

    def to_dict(self) -> dict[str, Any]:
        merged = {
            **self.record,
            "hash": self.hash,
            "body": self.body,
            "html": self.html,
            "salt": self.salt,
            "redacted": self.redacted,
            "corrected_by": list(self.corrected_by),
        }
        return {name: merged[name] for name in ENTRY_ORDER}

    def to_json(self) -> str:
        """Serialise once; every channel reuses the same text."""
        if not self._json:
            self._json.append(json.dumps(self.to_dict(), ensure_ascii=False))
        return self._json[0]
