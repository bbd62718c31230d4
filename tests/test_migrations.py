"""PostgreSQL schema migrations: numbered once each, applied once, a newer schema refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from broadcaster.errors import ConfigError
from broadcaster.store.migrations import available
from broadcaster.store.postgres import PgDatabase


def test_every_migration_has_its_own_number() -> None:
    """Two files with one number would make the second fail at every start."""
    versions = [version for version, _, _ in available()]
    assert versions and len(versions) == len(set(versions))


async def test_nodes_starting_together_apply_each_migration_once(database_url: str) -> None:
    """Three nodes opening a fresh database at once leave one row per migration."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    nodes = [PgDatabase(database_url) for _ in range(3)]
    await asyncio.gather(*(node.open() for node in nodes))
    await asyncio.gather(*(node.close() for node in nodes))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [row[0] for row in rows] == [version for version, _, _ in available()]


async def test_a_database_from_a_newer_release_is_refused(database_url: str) -> None:
    """A migration this release does not know stops the node instead of guessing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')")
    with pytest.raises(ConfigError, match="newer release"):
        await PgDatabase(database_url).open()
