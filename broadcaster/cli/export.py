"""Run ``broadcaster export ID [--data-dir DIR] [-o FILE]``: write an incident's archive.

The archive's contents are ``broadcaster.log.archive``'s; ``broadcaster verify
--file FILE`` checks it offline (``broadcaster.log.verify_archive``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..files import write_atomically
from ..log.archive import CannotExport, build_archive
from ..log.signing import Signer
from .args import settings_from


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.signing_key and not (settings.data_dir / "signing.key").exists():
        raise CannotExport(f"no signing key in {settings.data_dir}: is it the right data dir?")
    archive = build_archive(settings, args.incident)
    if not archive["keys"]["keys"]:  # a store this version never opened has no key history yet
        archive["keys"] = Signer.load(settings.data_dir, settings.signing_key).keys_document()
    text = json.dumps(archive, ensure_ascii=False, indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.output or f"{args.incident}.archive.json")
    write_atomically(target, text)
    print(f"wrote {target}: {len(archive['entries'])} entries, head seq "
          f"{archive['incident']['head']['seq']}", file=sys.stderr)  # fmt: skip
    return 0


def add_parser(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export", help="write an incident's entries, checkpoints and keys to one JSON file"
    )
    export.add_argument("incident", help="the incident id")
    export.add_argument("--data-dir", dest="data_dir")
    export.add_argument(
        "-o", "--output", help="file to write (default ID.archive.json, - = stdout)"
    )
    export.set_defaults(func=cmd_export)
