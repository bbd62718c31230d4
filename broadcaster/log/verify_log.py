"""Check an incident against the site's transparency log, trusting none of what was served.

Used by ``broadcaster verify`` (online) and ``verify --file`` (an archive,
offline). What is checked, given the log's signed checkpoint and its leaves:

- the checkpoint is signed by a key of the site (``/.well-known/broadcaster-keys.json``)
  under the origin's name, and that key is the one in force at that size:
  the first key, or the last one announced in the log by the key it replaced
  (so a key swapped without an announcement is caught);
- at least ``quorum`` of the given witnesses cosigned exactly this tree head;
- the leaves hash to the checkpoint's root;
- against the checkpoint remembered for this origin (``State``): the log did
  not shrink and its first leaves still hash to the remembered root (a
  rollback, a rewrite or a fork shown to this reader fails here);
- the incident: its creation record hashes to the seq-0 leaf, every leaf of
  the incident matches the served entry with that seq, no leaf is beyond the
  served timeline (entries removed), no seq appears twice, and an incident
  the log holds but the site no longer serves is reported as deleted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import now_ts
from ..files import write_atomically
from . import records
from .checkpoint import Checkpoint, parse_checkpoint
from .cosignature import CosignatureVerifier
from .merkle import leaf_hash, root_of
from .note import Ed25519Verifier, NoteError, UnverifiedNote, parse_note, verify_note
from .signing import unb64url


@dataclass
class LogFindings:
    """What the log says, once its checkpoint verified; ``problems`` empty when consistent."""

    checkpoint: Checkpoint | None = None
    key_id: str | None = None
    cosigners: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    quorum_problem: str | None = None
    leaves: dict[str, dict[int, list[str]]] = field(default_factory=dict)

    @property
    def all_problems(self) -> list[str]:
        return self.problems + ([self.quorum_problem] if self.quorum_problem else [])

    @property
    def rememberable(self) -> bool:
        """Tell whether the checkpoint may be remembered: signed by the site, consistent."""
        return self.checkpoint is not None and not self.problems


def site_verifiers(origin: str, keys: Any) -> dict[tuple[str, bytes], tuple[str, Ed25519Verifier]]:
    """Return the note verifiers of every listed site key, by (name, note key ID)."""
    found: dict[tuple[str, bytes], tuple[str, Ed25519Verifier]] = {}
    listed = keys.get("keys") if isinstance(keys, dict) else None
    for key in listed if isinstance(listed, list) else []:
        try:
            verifier = Ed25519Verifier(origin, unb64url(key["public_key"]))
        except (KeyError, TypeError, ValueError):
            continue
        found[(verifier.name, verifier.key_id)] = (str(key.get("key_id")), verifier)
    return found


def open_log_checkpoint(text: str, keys: Any, origin: str | None = None) -> tuple[Checkpoint, str]:
    """Verify the site's signature on a checkpoint; return it and the signing key's id.

    Raises ``NoteError`` (or ``ValueError``) when no listed key signed it, a
    signature fails, or the origin is not ``origin``.
    """
    note = parse_note(text)
    claimed = note.text.split("\n", 1)[0]
    if origin is not None and claimed != origin:
        raise ValueError(f"the checkpoint is for origin {claimed!r}, not {origin!r}")
    verifiers = site_verifiers(claimed, keys)
    site_only = verify_note(note, [v for _, v in verifiers.values()])
    sig = site_only.signatures[0]
    return parse_checkpoint(note.text), verifiers[(sig.name, sig.key_id)][0]


def cosigners_of(text: str, witnesses: Sequence[str]) -> list[str]:
    """Return the names of the given witnesses (vkeys) whose cosignature verifies on ``text``.

    Raises ``NoteError`` if a given witness's cosignature is present but does not verify.
    """
    verifiers = [CosignatureVerifier.from_vkey(w) for w in witnesses]
    if not verifiers:
        return []
    try:
        note = verify_note(text, verifiers)
    except UnverifiedNote:
        return []
    return sorted({sig.name for sig in note.signatures})


def key_in_force(leaves: Sequence[bytes], keys: Any) -> tuple[str | None, list[str]]:
    """Return the key the log says is in force after ``leaves``, and any broken announcement.

    The first key is the one the first announcement replaces (or, with no
    announcement, ``None``: any listed key, trust on first use). Each
    announcement must be signed by the key in force before it.
    """
    public = {}
    listed = keys.get("keys") if isinstance(keys, dict) else None
    for key in listed if isinstance(listed, list) else []:
        if isinstance(key, dict) and isinstance(key.get("public_key"), str):
            public[key.get("key_id")] = key["public_key"]
    current: str | None = None
    problems = []
    for index, data in enumerate(leaves):
        try:
            leaf = records.parse_leaf(data)
        except ValueError:
            continue  # reported by the leaf scan
        if not isinstance(leaf, records.KeyAnnouncement):
            continue
        if current is not None and leaf.replaces != current:
            problems.append(
                f"log leaf {index} announces key {leaf.key_id} replacing {leaf.replaces},"
                f" but the key in force was {current}"
            )
        old = public.get(leaf.replaces)
        try:
            signed = old is not None and leaf.signed_by(unb64url(old))
        except ValueError:
            signed = False
        if not signed:
            problems.append(
                f"log leaf {index}: the announcement of key {leaf.key_id} is not signed by"
                f" the key it replaces ({leaf.replaces}, which must stay listed)"
            )
        current = leaf.key_id
    return current, problems


def key_announcements(leaves: Sequence[bytes]) -> Iterator[records.KeyAnnouncement]:
    """Yield the log's key announcements in order (a leaf that does not parse is skipped)."""
    for data in leaves:
        try:
            leaf = records.parse_leaf(data)
        except ValueError:
            continue
        if isinstance(leaf, records.KeyAnnouncement):
            yield leaf


def announced_keys(leaves: Sequence[bytes]) -> set[str]:
    """Return every key the log names: the first key and each one announced."""
    return {key for leaf in key_announcements(leaves) for key in (leaf.key_id, leaf.replaces)}


def first_key(leaves: Sequence[bytes]) -> str | None:
    """Return the key the first announcement replaces: the site's first key."""
    return next((leaf.replaces for leaf in key_announcements(leaves)), None)


def check_log(
    text: str,
    keys: Any,
    leaves: Sequence[bytes],
    *,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
    remembered: str | None = None,
    remembered_key: str | None = None,
) -> LogFindings:
    """Check a served checkpoint (with its cosignatures) and the leaves it covers."""
    found = LogFindings()
    try:
        checkpoint, key_id = open_log_checkpoint(text, keys)
    except (NoteError, ValueError, KeyError) as exc:
        found.problems.append(f"the log checkpoint does not verify with the site's keys: {exc}")
        return found
    found.checkpoint, found.key_id = checkpoint, key_id
    if len(leaves) != checkpoint.size:
        found.problems.append(f"the log served {len(leaves)} leaves for size {checkpoint.size}")
        return found
    if root_of([leaf_hash(d) for d in leaves]) != checkpoint.root_hash:
        found.problems.append("the log's leaves do not hash to the checkpoint's root")
        return found
    in_force, broken = key_in_force(leaves, keys)
    found.problems.extend(broken)
    expected = in_force or first_key(leaves) or remembered_key
    if expected is not None and key_id != expected:
        found.problems.append(
            f"the checkpoint is signed by key {key_id}, but the key in force per the log is"
            f" {expected} (a key change the log never announced)"
        )
    elif remembered_key is not None and remembered_key not in announced_keys(leaves) | {key_id}:
        found.problems.append(
            f"the log's key history does not include key {remembered_key}, which signed the"
            " checkpoint this reader saw before"
        )
    try:
        found.cosigners = cosigners_of(text, witnesses)
    except (NoteError, ValueError) as exc:
        found.problems.append(f"a witness cosignature does not verify: {exc}")
    if witnesses and len(found.cosigners) < quorum:
        found.quorum_problem = (
            f"only {len(found.cosigners)} of the required {quorum} witnesses cosigned this"
            f" checkpoint (size {checkpoint.size})"
            + (f": {', '.join(found.cosigners)}" if found.cosigners else "")
        )
    if remembered is not None:
        found.problems.extend(consistency(remembered, checkpoint, leaves, keys))
    for index, data in enumerate(leaves):
        try:
            leaf = records.parse_leaf(data)
        except ValueError as exc:
            found.problems.append(f"log leaf {index}: {exc}")
            continue
        if isinstance(leaf, records.IncidentLeaf):
            found.leaves.setdefault(leaf.incident, {}).setdefault(leaf.seq, []).append(leaf.hash)
    return found


def consistency(
    remembered: str, checkpoint: Checkpoint, leaves: Sequence[bytes], keys: Any
) -> list[str]:
    """Return why the log is not an extension of the remembered checkpoint (empty if it is)."""
    old = parse_checkpoint(parse_note(remembered).text)
    if old.origin != checkpoint.origin:
        return []
    if checkpoint.size < old.size:
        return [
            f"the log shrank: this reader saw size {old.size} before, the site now shows"
            f" {checkpoint.size} (rollback)"
        ]
    if root_of([leaf_hash(d) for d in leaves[: old.size]]) != old.root_hash:
        return [
            f"the log is not consistent with the checkpoint this reader saw before (size"
            f" {old.size}): its history was rewritten or forked"
        ]
    return []


def check_incident(
    incident_id: str,
    incident: dict[str, Any] | None,
    entries: Sequence[dict[str, Any]],
    found: LogFindings,
) -> list[tuple[int | None, str]]:
    """Compare an incident as served with its leaves in the log; return ``(seq, problem)`` pairs."""
    logged = found.leaves.get(incident_id, {})
    size = found.checkpoint.size if found.checkpoint else 0
    if incident is None:
        if logged:
            return [
                (
                    None,
                    f"incident {incident_id} is in the log ({len(logged)} leaves up to size"
                    f" {size}) but the site no longer serves it: it was deleted",
                )
            ]
        return []
    problems: list[tuple[int | None, str]] = []
    for seq, hashes in sorted(logged.items()):
        if len(set(hashes)) > 1:
            problems.append((seq, f"the log holds {len(hashes)} different hashes for this seq"))
    if 0 in logged:
        creation = incident.get("creation")
        record = creation.get("record") if isinstance(creation, dict) else None
        if not isinstance(record, dict):
            problems.append((0, "the incident serves no creation record"))
        else:
            try:
                digest = records.creation_hash(record)
            except (TypeError, ValueError):
                digest = None
            if digest != logged[0][0] or record.get("incident") != incident_id:
                problems.append((0, "the creation record does not match the log's seq-0 leaf"))
            elif sorted(record) != sorted(records.CREATION_FIELDS):
                problems.append((0, "the creation record does not have the documented fields"))
    elif logged:
        problems.append((0, "the log holds entries of this incident but not its creation"))
    by_seq = {e.get("seq"): e.get("hash") for e in entries if isinstance(e, dict)}
    for seq, hashes in sorted(logged.items()):
        if seq == 0:
            continue
        if seq > len(entries):
            problems.append(
                (
                    seq,
                    f"the log holds seq {seq} but the timeline ends at seq {len(entries)}:"
                    " entries were removed (rollback)",
                )
            )
        elif by_seq.get(seq) != hashes[0]:
            problems.append((seq, "the entry's hash is not the one in the log"))
    top = max(logged) if logged else 0
    for seq in range(1, min(top, len(entries)) + 1):
        if seq not in logged:
            problems.append((seq, "this entry is missing from the log"))
    return problems


@dataclass
class State:
    """The last checkpoint this reader saw per origin, kept in a small JSON file."""

    path: Path
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def default_path() -> Path:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "broadcaster" / "verify-state.json"

    @classmethod
    def load(cls, path: Path) -> State:
        """Read the state; a missing file is an empty state, a damaged one an error."""
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls(path)
        logs = data.get("logs") if isinstance(data, dict) else None
        if not isinstance(logs, dict):
            raise ValueError(f"{path} is not a verify state file")
        return cls(path, logs)

    def remembered(self, origin: str) -> str | None:
        entry = self.logs.get(origin)
        return entry.get("checkpoint") if isinstance(entry, dict) else None

    def remembered_key(self, origin: str) -> str | None:
        entry = self.logs.get(origin)
        return entry.get("key_id") if isinstance(entry, dict) else None

    def remember(self, checkpoint: Checkpoint, text: str, key_id: str) -> None:
        """Keep ``text`` for its origin unless a larger checkpoint is already remembered."""
        old = self.remembered(checkpoint.origin)
        if old is not None and parse_checkpoint(parse_note(old).text).size > checkpoint.size:
            return
        self.logs[checkpoint.origin] = {"checkpoint": text, "key_id": key_id, "seen_at": now_ts()}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps({"logs": self.logs}, indent=1) + "\n")
