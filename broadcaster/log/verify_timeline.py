"""Verify a timeline from what the service publishes, trusting none of it.

``check_timeline`` recomputes every ``content_hash`` and ``hash``, follows
``prev_hash`` from the genesis hash, checks that seqs run 1..N without a gap,
that every withheld body is announced by a later ``redaction`` entry, and that
the signed checkpoint (Ed25519, keys from ``/.well-known/broadcaster-keys.json``)
names the head. Given a checkpoint saved earlier, it also proves the current
timeline extends it: same hash at the saved seq.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import chain
from .signing import verify_checkpoint

#: The only spelling of a salt: ``bytes.fromhex`` also takes upper case, so
#: without this a changed salt text could still hash to the same value.
SALT = re.compile(r"[0-9a-f]{32}")


@dataclass
class Report:
    """What verification found: ``problems`` is empty when the timeline is intact."""

    incident: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, seq: int | None, message: str) -> None:
        if seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq):
            self.first_bad_seq = seq
        self.problems.append(f"seq {seq}: {message}" if seq is not None else message)


def check_entry(entry: dict[str, Any], expected_prev: str, report: Report) -> None:
    seq = entry.get("seq")
    try:
        record = chain.record_of(entry)
    except KeyError as exc:
        report.fail(seq, f"field {exc.args[0]!r} is missing")
        return
    if entry.get("prev_hash") != expected_prev:
        report.fail(seq, f"prev_hash {entry.get('prev_hash')} does not match {expected_prev}")
    if entry.get("redacted"):
        if entry.get("body") not in ("", None) or entry.get("salt") not in ("", None):
            report.fail(seq, "a redacted entry still carries its body or salt")
    else:
        salt, body = entry.get("salt"), entry.get("body")
        actual = None
        if isinstance(salt, str) and isinstance(body, str):
            # A salt that is not hex (or a body that is not UTF-8) is reported just below.
            with contextlib.suppress(ValueError):
                actual = chain.content_hash(salt, body)
        if not isinstance(salt, str) or not SALT.fullmatch(salt):
            report.fail(seq, f"salt {salt!r} is not 32 lowercase hex digits")
        elif actual != entry.get("content_hash"):
            report.fail(seq, f"content_hash does not match body and salt (computed {actual})")
    try:
        computed = chain.entry_hash(record)
    except (TypeError, ValueError) as exc:
        report.fail(seq, f"record cannot be encoded ({exc})")
        return
    if computed != entry.get("hash"):
        report.fail(seq, f"hash does not match its fields (computed {computed})")


def check_timeline(
    incident_id: str,
    entries: Sequence[dict[str, Any]],
    checkpoint: dict[str, Any] | None,
    keys: dict[str, Any],
    saved: dict[str, Any] | None = None,
    *,
    newer_allowed: bool = False,
) -> Report:
    """Check everything and return a report; never raises on bad data.

    ``newer_allowed``: the checkpoint was read before the entries, so entries
    after its seq are expected (they were appended meanwhile); the caller
    vouches for them otherwise (the log).
    """
    report = Report(incident_id, len(entries))
    expected_prev = chain.genesis_hash(incident_id)
    hashes: dict[int, str] = {}
    announced: set[int] = set()
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            report.fail(index, "entry is not a JSON object")
            break
        seq = entry.get("seq")
        if seq != index:
            report.fail(index, f"expected seq {index}, found {seq!r} (gap, reorder or deletion)")
            break
        if entry.get("incident") != incident_id:
            report.fail(seq, f"entry belongs to {entry.get('incident')!r}")
        check_entry(entry, expected_prev, report)
        redacts = entry.get("redacts")
        # Only an earlier entry can be redacted: a redaction cannot announce its future.
        if entry.get("kind") == "redaction" and isinstance(redacts, int) and redacts < index:
            announced.add(redacts)
        hashes[index] = str(entry.get("hash"))
        expected_prev = str(entry.get("hash"))
    for index, entry in enumerate(entries, start=1):
        if isinstance(entry, dict) and entry.get("redacted") and index not in announced:
            report.fail(index, "body withheld without a redaction entry announcing it")
    head_seq = len(entries)
    if checkpoint is None:
        if head_seq:
            report.fail(None, "no signed checkpoint for a non-empty timeline")
    else:
        problem = verify_checkpoint(checkpoint, keys)
        if problem:
            report.fail(None, problem)
        elif checkpoint.get("incident") != incident_id:
            report.fail(None, "checkpoint is for another incident")
        elif hashes.get(checkpoint.get("seq", -1)) != checkpoint.get("hash"):
            report.fail(
                checkpoint.get("seq"), "signed checkpoint does not match the timeline's hash there"
            )
        elif checkpoint.get("seq") != head_seq and not newer_allowed:
            report.fail(None, f"checkpoint is at seq {checkpoint.get('seq')}, head at {head_seq}")
    if saved is not None:
        problem = verify_checkpoint(saved, keys)
        if problem:
            report.fail(None, f"saved checkpoint: {problem}")
        elif saved.get("incident") != incident_id:
            report.fail(None, "saved checkpoint is for another incident")
        elif hashes.get(saved.get("seq", -1)) != saved.get("hash"):
            report.fail(
                saved.get("seq"),
                "the timeline does not extend the saved checkpoint (history was rewritten)",
            )
    return report


def print_report(report: Report, head: dict[str, Any] | None, where: str = "") -> int:
    """Print the verdict the way ``broadcaster verify`` does and return its exit code (0 or 1)."""
    if report.ok:
        head = head or {}
        print(
            f"intact: {report.entries} entries, head seq {head.get('seq', 0)} "
            f"{head.get('hash', '')}, signed by key {head.get('key_id', '-')}{where}"
        )
        return 0
    print(f"TAMPERED: first bad seq {report.first_bad_seq}", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1
