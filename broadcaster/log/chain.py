"""Compute the hashes that chain an incident's timeline.

The encoding is written down in ``docs/integrity.md``; this module is its
reference implementation and must stay byte-for-byte equal to it:

* canonical JSON: UTF-8, keys sorted, no insignificant white space, non-ASCII
  characters literal (not ``\\u`` escaped). Values are only strings, integers,
  booleans, null, lists and objects (never floats), so this equals RFC 8785
  (JCS) output for every record we hash.
* ``content_hash = "sha256:" + hex(SHA-256(salt_bytes || UTF-8(body)))``
* ``hash = "sha256:" + hex(SHA-256(canonical_json(record)))`` where ``record``
  holds every entry field except ``html``, ``body``, ``salt``, ``redacted`` and
  ``hash`` itself (``prev_hash`` and ``content_hash`` included).
* the genesis hash of incident ``ID`` is
  ``"sha256:" + hex(SHA-256(UTF-8("broadcaster:genesis:" + ID)))``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX = "sha256:"

#: Fields of an entry covered by ``hash`` (besides nothing else). Adding a kind
#: later must never change this list: fields that do not apply are ``null``.
HASHED_FIELDS = (
    "incident",
    "seq",
    "kind",
    "posted_at",
    "event_time",
    "author",
    "corrects",
    "status",
    "sms",
    "figures",
    "approved_by",
    "redacts",
    "question",
    "update_interval_minutes",
    "severity",
    "advice",
    "summary",
    "area",
    "pinned",
    "content_hash",
    "prev_hash",
)


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes; refuse floats, which JCS would reformat."""
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("floats are not allowed in hashed records")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_floats(item)


def sha256(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def genesis_hash(incident_id: str) -> str:
    return sha256(("broadcaster:genesis:" + incident_id).encode("utf-8"))


def content_hash(salt_hex: str, body: str) -> str:
    return sha256(bytes.fromhex(salt_hex) + body.encode("utf-8"))


def record_of(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the hashed part of an entry (KeyError if a field is missing)."""
    return {name: entry[name] for name in HASHED_FIELDS}


def entry_hash(record: dict[str, Any]) -> str:
    return sha256(canonical_json(record))
