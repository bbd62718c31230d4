"""Keep everything the service stores; the only package that touches a database.

Two backends share one job interface (``write(job)`` and ``read(job)``, where
a job is a plain function of a connection): SQLite in the data directory, the
embedded default (``broadcaster.store.sqlite``), and PostgreSQL, the one
authoritative store of several nodes (``broadcaster.store.postgres``).
``database_for`` picks one from the configuration and imports PostgreSQL's
driver only when it is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import Settings
from .sqlite import Database

if TYPE_CHECKING:
    from .postgres import PgDatabase

DATABASE_FILE = "broadcaster.db"


def database_path(settings: Settings) -> Path:
    """Return the SQLite file of a single-node data directory."""
    return settings.data_dir / DATABASE_FILE


def database_for(settings: Settings) -> Database | PgDatabase:
    """Return the (unopened) database the configuration names."""
    if settings.database_url:
        from .postgres import PgDatabase

        return PgDatabase(settings.database_url)
    return Database(database_path(settings))
