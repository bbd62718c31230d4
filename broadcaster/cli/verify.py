"""Run ``broadcaster verify``: check a published timeline end to end, or an archive offline.

Exit codes: 0 intact, 1 tampered (it says where), 2 could not check
(network, HTTP or format problems).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..log.fetch import CouldNotCheck, fetch_timeline
from ..log.note import parse_note
from ..log.verify_archive import verify_file
from ..log.verify_log import State, check_incident, check_log
from ..log.verify_timeline import check_timeline, print_report


def cmd_verify(args: argparse.Namespace) -> int:
    witnesses = args.witness or []
    quorum = len(witnesses) if args.quorum is None else args.quorum
    if quorum > len(witnesses):
        print(f"could not check: --quorum {quorum} needs as many --witness", file=sys.stderr)
        return 2
    if args.file:  # an archive from `broadcaster export`, checked with no network
        return verify_file(Path(args.file), args.checkpoint, witnesses, quorum)
    if not (args.base_url and args.incident):
        print("could not check: give BASE_URL and INCIDENT_ID, or --file FILE", file=sys.stderr)
        return 2
    saved = None
    try:
        if args.checkpoint:
            saved = json.loads(Path(args.checkpoint).read_text("utf-8"))
        state = State.load(Path(args.state) if args.state else State.default_path())
        data = asyncio.run(fetch_timeline(args.base_url, args.incident))
        origin = parse_note(data["log"]).text.split("\n", 1)[0]
        found = check_log(
            data["log"],
            data["keys"],
            data["leaves"],
            witnesses=witnesses,
            quorum=quorum,
            remembered=state.remembered(origin),
            remembered_key=state.remembered_key(origin),
        )
    except (CouldNotCheck, OSError, ValueError) as exc:
        print(f"could not check: {exc}", file=sys.stderr)
        return 2
    incident_problems = check_incident(args.incident, data["incident"], data["entries"], found)
    if data["incident"] is None and not incident_problems:
        print(f"could not check: the site has no incident {args.incident!r}", file=sys.stderr)
        return 2
    entries, checkpoint = data["entries"], data["checkpoint"]
    # The signed head and the log were read before the entries: entries newer
    # than both were appended meanwhile and are not vouched for by a signature yet.
    signed = checkpoint.get("seq") if isinstance(checkpoint, dict) else 0
    logged = max(found.leaves.get(args.incident, {0: []}))
    covered = max(signed if isinstance(signed, int) else 0, logged)
    newer = max(0, len(entries) - covered)
    report = check_timeline(args.incident, entries[:covered], checkpoint, data["keys"], saved,
                            newer_allowed=True)  # fmt: skip
    for problem in found.all_problems:
        report.fail(None, problem)
    for seq, problem in incident_problems:
        report.fail(seq, problem)
    if found.rememberable and found.checkpoint is not None and found.key_id is not None:
        state.remember(found.checkpoint, data["log"], found.key_id)
        try:
            state.save()
        except OSError as exc:
            print(f"warning: cannot save {state.path}: {exc}", file=sys.stderr)
    where = ""
    if found.checkpoint is not None:
        cosigned = f", cosigned by {', '.join(found.cosigners)}" if found.cosigners else ""
        where = f"; in log {found.checkpoint.origin} at size {found.checkpoint.size}{cosigned}"
    if newer:
        where += f"; {newer} newer entries not yet signed (not checked)"
    return print_report(report, checkpoint, where)


def add_parser(subparsers: Any) -> None:
    verify = subparsers.add_parser("verify", help="check a published timeline end to end")
    verify.add_argument("base_url", nargs="?")
    verify.add_argument("incident", nargs="?")
    verify.add_argument("--file", help="verify an archive written by 'broadcaster export', offline")
    verify.add_argument("--checkpoint", help="a checkpoint JSON saved earlier")
    verify.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a witness's verifier key whose cosignature is required (repeatable)",
    )
    verify.add_argument(
        "--quorum", type=int, help="how many of the --witness keys must cosign (default: all)"
    )
    verify.add_argument(
        "--state",
        help="file remembering the last log checkpoint per origin"
        " (default $XDG_STATE_HOME/broadcaster/verify-state.json)",
    )
    verify.set_defaults(func=cmd_verify)
