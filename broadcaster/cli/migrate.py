"""Move a single-node data directory onto PostgreSQL: ``broadcaster migrate --to URL``.

It refuses a target that already holds data, checks every incident's chain
and signed checkpoint in the SQLite file first (a damaged record is not
carried over silently), copies everything in one PostgreSQL transaction, then
reads every timeline back from PostgreSQL and compares it, entry by entry,
with the source. Stop the node first: the copy is of the file as it is.
Afterwards point every node at the database with ``BROADCASTER_DATABASE_URL``
and the same ``BROADCASTER_SIGNING_KEY`` (or the data directory's
``signing.key``).

Exit codes: 0 copied and verified, 1 refused (a chain does not verify, the
copy differs, the target is not empty), 2 could not run (no such data
directory, PostgreSQL unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..errors import BroadcasterError
from ..log.signing import Signer
from ..log.verify_timeline import check_timeline
from ..settings import Settings
from ..store import copy, database_path
from ..store.postgres import PgDatabase
from .args import settings_from


class Refused(BroadcasterError):
    """The migration would carry damage over or overwrite data: nothing was written."""


def check_all(conn: Any, keys: dict[str, Any], where: str) -> dict[str, list[dict[str, Any]]]:
    """Verify every incident's chain and checkpoint; return the entries by incident."""
    timelines = {}
    for incident in copy.incidents_of(conn):
        entries, checkpoint = copy.record_of(conn, incident["id"])
        report = check_timeline(incident["id"], entries, checkpoint, keys)
        if not report.ok:
            raise Refused(f"{where}: incident {incident['id']} does not verify: {report.problems}")
        timelines[incident["id"]] = entries
    return timelines


async def migrate(settings: Settings, url: str) -> dict[str, int]:
    """Copy ``settings.data_dir``'s SQLite store into the empty database at ``url``."""
    path = database_path(settings)
    if not path.exists():
        raise BroadcasterError(f"no SQLite database at {path}")
    keys = Signer.load(settings.data_dir, settings.signing_key).keys_document()
    source = copy.open_source(path)
    target = PgDatabase(url)
    try:
        source.execute("BEGIN")  # one snapshot of the source throughout
        timelines = check_all(source, keys, "the SQLite file")
        await target.open()

        def job(conn: Any) -> dict[str, int]:
            occupied = copy.non_empty_tables(conn)
            if occupied:
                raise Refused(f"the target database is not empty: {', '.join(occupied)} hold rows")
            counts = {}
            for table in copy.source_tables(source):
                counts[table] = copy.copy_table(source, conn, table)
            copy.move_identities(conn)
            return counts

        counts = await target.write(job)
        copied = await target.read(lambda conn: check_all(conn, keys, "the PostgreSQL copy"))
        if copied != timelines:
            raise Refused("the copy read back from PostgreSQL differs from the source")
        return counts
    finally:
        source.close()
        await target.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not args.to.startswith(("postgresql://", "postgres://")):
        print("broadcaster: --to must be a postgresql:// URL", file=sys.stderr)
        return 2
    try:
        counts = asyncio.run(migrate(settings, args.to))
    except Refused as exc:
        print(f"refused, nothing was written: {exc}", file=sys.stderr)
        return 1
    incidents, entries = counts.get("incidents", 0), counts.get("entries", 0)
    print(f"copied {incidents} incidents and {entries} entries; every chain verified on both sides")
    print("next: set BROADCASTER_DATABASE_URL on every node (and the same signing key)")
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate", help="copy a single-node data directory into an empty PostgreSQL database"
    )
    parser.add_argument("--to", required=True, help="postgresql://... (must be empty)")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.set_defaults(func=cmd_migrate)
