"""Encode what the site's log holds: incident leaves, creation records and key announcements.

Every log entry is canonical JSON (``broadcaster.log.chain.canonical_json``):

- an incident leaf ``{"hash", "incident", "seq"}``: seq 1, 2, ... are the
  timeline's entries with their ``hash``; seq 0 is the incident's creation,
  whose ``hash`` is ``"sha256:" + hex(SHA-256(canonical_json(record)))`` over
  the creation record ``{"advice", "area", "created_by", "incident",
  "severity", "started_at", "summary", "title"}``: the incident as created
  (``advice`` null when none was given); later changes are status entries;
- a key announcement ``{"key_id", "public_key", "replaces", "signature",
  "type": "key", "valid_from"}``: the site's new Ed25519 key (raw public key
  in unpadded base64url, ``key_id`` as in ``broadcaster.log.signing``), the id of
  the key it replaces, and that old key's Ed25519 signature (unpadded
  base64url) over the canonical JSON of the other five members.

Nothing here touches a database or the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import canonical_json, sha256
from .signing import b64url, key_id_of, unb64url

CREATION_FIELDS = (
    "incident", "title", "summary", "advice", "severity", "area", "started_at", "created_by",
)  # fmt: skip
ANNOUNCEMENT_FIELDS = ("type", "key_id", "public_key", "valid_from", "replaces")


def incident_leaf(incident: str, seq: int, entry_hash: str) -> bytes:
    """Return the log entry of an incident's creation (seq 0) or of timeline entry ``seq``."""
    return canonical_json({"incident": incident, "seq": seq, "hash": entry_hash})


def creation_record(incident: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Return the creation record of an incident from its stored or requested fields."""
    record = {name: fields.get(name) for name in CREATION_FIELDS}
    record["incident"] = incident
    return record


def creation_hash(record: dict[str, Any]) -> str:
    """Return the hash a seq-0 leaf commits to."""
    return sha256(canonical_json(record))


def announcement_body(key_id: str, public_raw: bytes, valid_from: str, replaces: str) -> bytes:
    """Return the bytes the replaced key signs to announce a new key."""
    return canonical_json(
        {
            "type": "key",
            "key_id": key_id,
            "public_key": b64url(public_raw),
            "valid_from": valid_from,
            "replaces": replaces,
        }
    )


def announcement_leaf(body: bytes, signature: bytes) -> bytes:
    """Return the log entry announcing a key: the body plus the old key's signature."""
    return canonical_json({**json.loads(body), "signature": b64url(signature)})


@dataclass(frozen=True)
class IncidentLeaf:
    incident: str
    seq: int
    hash: str


@dataclass(frozen=True)
class KeyAnnouncement:
    key_id: str
    public_raw: bytes
    valid_from: str
    replaces: str
    signature: bytes

    def signed_by(self, public_raw: bytes) -> bool:
        """Return whether the replaced key (``public_raw``) signed this announcement."""
        body = announcement_body(self.key_id, self.public_raw, self.valid_from, self.replaces)
        try:
            Ed25519PublicKey.from_public_bytes(public_raw).verify(self.signature, body)
        except (InvalidSignature, ValueError):
            return False
        return key_id_of(public_raw) == self.replaces


def parse_leaf(data: bytes) -> IncidentLeaf | KeyAnnouncement:
    """Return what a log entry says; ValueError unless it is exactly one of the two forms."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"a log entry is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("a log entry is not a JSON object")
    if value.keys() == {"incident", "seq", "hash"}:
        incident, seq, entry_hash = value["incident"], value["seq"], value["hash"]
        ok = isinstance(incident, str) and isinstance(entry_hash, str)
        if not ok or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("an incident leaf has a string incident and hash and a seq >= 0")
        leaf: IncidentLeaf | KeyAnnouncement = IncidentLeaf(incident, seq, entry_hash)
    elif value.keys() == {*ANNOUNCEMENT_FIELDS, "signature"} and value["type"] == "key":
        try:
            leaf = KeyAnnouncement(
                str(value["key_id"]),
                unb64url(str(value["public_key"])),
                str(value["valid_from"]),
                str(value["replaces"]),
                unb64url(str(value["signature"])),
            )
        except ValueError as exc:
            raise ValueError(f"a key announcement is malformed: {exc}") from None
        if key_id_of(leaf.public_raw) != leaf.key_id:
            raise ValueError("a key announcement's key_id is not its key's")
    else:
        raise ValueError(f"unknown log entry with members {sorted(value)}")
    if canonical_json(value) != data:
        raise ValueError("a log entry is not in canonical JSON")
    return leaf
