"""Apply the PostgreSQL schema as numbered migrations, one node at a time.

Each ``NNNN_name.sql`` file beside this module is one migration, applied in
its own transaction and recorded in ``schema_migrations``. Nodes starting
together queue on a session advisory lock, so exactly one applies what is
missing and the others find it done. A database that has migrations this
version does not know (a newer release wrote it) is refused rather than
guessed at.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from ...errors import ConfigError

log = logging.getLogger(__name__)
#: The session advisory lock held while migrating (distinct from the write lock).
MIGRATION_LOCK = 0x42524F4D  # "BROM"


def available() -> list[tuple[int, str, str]]:
    """Return ``(version, name, sql)`` for every migration shipped, in order."""
    found = []
    for item in resources.files(__package__).iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name[:-4], item.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: Any) -> list[str]:
    """Apply the missing migrations on an autocommit connection; return their names."""
    raw = conn.raw
    raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        raw.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        raw.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        done = {row[0] for row in raw.execute("SELECT version FROM schema_migrations")}
        shipped = available()
        unknown = done - {version for version, _, _ in shipped}
        if unknown:
            raise ConfigError(
                f"the database has schema migrations this version does not know: {sorted(unknown)}"
                " (it was written by a newer release)"
            )
        applied = []
        for version, name, sql in shipped:
            if version in done:
                continue
            with raw.transaction():
                raw.execute(sql.encode())
                raw.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
                )
            log.info("applied schema migration %s", name)
            applied.append(name)
        return applied
    finally:
        raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
