"""Write an incident's whole record as one JSON file: ``broadcaster export``'s archive.

The archive holds, read from the configured store in one read-only snapshot
that is safe while the service runs: the incident with its creation record,
every entry as served publicly (redacted ones without their text: an archive
is a public record, and withheld text must not survive in it), every signed
checkpoint, the site's key history, and the log's latest published
checkpoint with its witnesses' cosignatures and an inclusion proof for each
of the incident's leaves (format ``broadcaster-archive/2``, JSON Schema in
``docs/schemas/archive.schema.json``). ``broadcaster.log.verify_archive``
checks such a file offline; ``broadcaster.cli.export`` is the command.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..clock import now_ts
from ..errors import BroadcasterError
from ..settings import Settings
from ..store import database_for, database_path
from ..store.export import Record, read_record
from .note import b64encode
from .site import keys_document

FORMAT = "broadcaster-archive/2"
#: Archives written before the log: no creation record, no log, checked as before.
FORMATS = ("broadcaster-archive/1", FORMAT)


class CannotExport(BroadcasterError):
    """The store has no such incident, or no signing key to publish."""


def build_archive(settings: Settings, incident_id: str) -> dict[str, Any]:
    """Read one incident's record from the configured store, in one snapshot."""
    if not settings.database_url and not database_path(settings).exists():
        raise CannotExport(f"no database at {database_path(settings)}")

    async def read() -> Record | None:
        db = database_for(settings)
        await db.open()
        try:
            return await db.read(lambda conn: read_record(conn, incident_id))
        finally:
            await db.close()

    record = asyncio.run(read())
    if record is None:
        raise CannotExport(f"no incident {incident_id!r} in the store")
    log = None
    if record.log_checkpoint is not None:
        log = {
            "checkpoint": record.log_checkpoint,
            "leaves": [
                {
                    "index": index,
                    "seq": seq,
                    "entry": data.decode("utf-8"),
                    "proof": [b64encode(h) for h in proof],
                }
                for index, seq, data, proof in record.leaves
            ],
        }
    return {
        "format": FORMAT,
        "exported_at": now_ts(),
        "incident": record.incident,
        "entries": [entry.to_dict() for entry in record.entries],
        "checkpoints": record.checkpoints,
        "keys": keys_document(settings.origin, record.keys),
        "log": log,
    }
