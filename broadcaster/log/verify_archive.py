"""Verify an archive written by ``broadcaster export``, offline: ``broadcaster verify --file``.

With no network it checks every hash, the chain from the genesis hash, every
checkpoint's signature and position, that the incident's head is the last
entry, and that every leaf is included in the log checkpoint, which K of the
given witnesses cosigned (``--witness VKEY ... --quorum K``).

What the file cannot prove: that the site logged nothing later for this
incident (only the live log, scanned by ``verify BASE_URL``, shows that);
and without ``--witness``, an archive signed by a key the reader does not
already trust proves only that it is self-consistent.

Exit codes follow ``verify``: 0 intact, 1 tampered (it says where), 2 could
not check (unreadable file, not an archive, unknown incident).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import records
from .archive import FORMAT, FORMATS
from .merkle import leaf_hash, verify_inclusion
from .note import NoteError, b64decode
from .signing import verify_checkpoint
from .verify_log import LogFindings, check_incident, cosigners_of, open_log_checkpoint
from .verify_timeline import Report, check_timeline, print_report


def check_archive(data: Any, witnesses: Sequence[str] = (), quorum: int = 0) -> Report:
    """Verify an archive; raise ``ValueError`` when it is not one at all."""
    if not isinstance(data, dict) or data.get("format") not in FORMATS:
        raise ValueError(f"not a {FORMAT} file")
    incident, entries = data.get("incident"), data.get("entries")
    checkpoints, keys = data.get("checkpoints"), data.get("keys")
    if not (isinstance(incident, dict) and isinstance(incident.get("id"), str)):
        raise ValueError("the archive has no incident id")
    if not (isinstance(entries, list) and isinstance(checkpoints, list)):
        raise ValueError("the archive has no entries or checkpoints list")
    if not (isinstance(keys, dict) and all(isinstance(e, dict) for e in entries)):
        raise ValueError("the archive has no keys document")
    incident_id = incident["id"]
    latest = checkpoints[-1] if checkpoints else None
    report = check_timeline(incident_id, entries, latest, keys)
    hashes = {e.get("seq"): e.get("hash") for e in entries}
    for checkpoint in checkpoints[:-1]:
        seq = checkpoint.get("seq") if isinstance(checkpoint, dict) else None
        problem = verify_checkpoint(checkpoint, keys) if isinstance(checkpoint, dict) else None
        if problem or checkpoint.get("incident") != incident_id:
            report.fail(seq, f"checkpoint: {problem or 'for another incident'}")
        elif hashes.get(seq) != checkpoint.get("hash"):
            report.fail(seq, "a signed checkpoint does not match the timeline's hash there")
    head = {"seq": len(entries), "hash": entries[-1].get("hash") if entries else None}
    if entries and incident.get("head") != head:
        report.fail(None, f"the incident's head {incident.get('head')} is not the last entry")
    if data["format"] == FORMAT:
        check_archived_log(data, report, witnesses, quorum)
    elif witnesses:
        report.fail(None, "a broadcaster-archive/1 file has no log for witnesses to vouch for")
    return report


def check_archived_log(
    data: dict[str, Any], report: Report, witnesses: Sequence[str], quorum: int
) -> None:
    """Check the archive's leaves against its log checkpoint, and that against the witnesses."""
    log = data.get("log")
    incident_id = report.incident
    if log is None:
        if witnesses or data["entries"]:
            report.fail(None, "the archive has no log checkpoint")
        return
    if not isinstance(log, dict) or not isinstance(log.get("leaves"), list):
        raise ValueError("the archive's log is malformed")
    found = LogFindings()
    try:
        checkpoint, found.key_id = open_log_checkpoint(str(log.get("checkpoint")), data["keys"])
        found.checkpoint = checkpoint
        found.cosigners = cosigners_of(str(log["checkpoint"]), witnesses)
    except (NoteError, ValueError, KeyError) as exc:
        report.fail(None, f"the log checkpoint does not verify: {exc}")
        return
    if witnesses and len(found.cosigners) < quorum:
        report.fail(None, f"only {len(found.cosigners)} of the required {quorum} witnesses"
                    f" cosigned the archive's log checkpoint")  # fmt: skip
    for item in log["leaves"]:
        try:
            entry = str(item["entry"]).encode("utf-8")
            proof = [b64decode(h) for h in item["proof"]]
            index = item["index"]
            leaf = records.parse_leaf(entry)
        except (KeyError, TypeError, ValueError) as exc:
            report.fail(None, f"an archived log leaf is malformed: {exc}")
            continue
        if not isinstance(leaf, records.IncidentLeaf) or leaf.incident != incident_id:
            report.fail(None, f"log leaf {index} is not one of this incident's")
            continue
        if not verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof,
                                checkpoint.root_hash):  # fmt: skip
            report.fail(leaf.seq, f"log leaf {index} is not included in the log checkpoint")
            continue
        found.leaves.setdefault(incident_id, {}).setdefault(leaf.seq, []).append(leaf.hash)
    for seq, problem in check_incident(incident_id, data["incident"], data["entries"], found):
        report.fail(seq, problem)


def verify_file(
    path: Path,
    saved_checkpoint: str | None = None,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> int:
    """Verify the archive at ``path`` and print the outcome; return the exit code."""
    try:
        data = json.loads(path.read_text("utf-8"))
        report = check_archive(data, witnesses, quorum)
        if saved_checkpoint:
            saved = json.loads(Path(saved_checkpoint).read_text("utf-8"))
            entries = data["entries"]
            latest = data["checkpoints"][-1] if data["checkpoints"] else None
            extra = check_timeline(report.incident, entries, latest, data["keys"], saved)
            for problem in extra.problems:
                if problem not in report.problems:
                    report.fail(extra.first_bad_seq, problem)
    except (OSError, ValueError) as exc:
        print(f"could not check: {exc}", file=sys.stderr)
        return 2
    head = data["checkpoints"][-1] if data["checkpoints"] else None
    return print_report(report, head, f" (offline, {path})")
