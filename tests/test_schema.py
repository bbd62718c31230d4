"""The timeline's tables refuse UPDATE and DELETE inside the database itself (either backend)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry
from raw_store import INTEGRITY_ERRORS, raw_store

from broadcaster.settings import Settings

STATEMENTS = [
    "UPDATE entries SET hash = 'sha256:00'",
    "UPDATE entries SET record = replace(record, 'update', 'status')",
    "DELETE FROM entries",
    "UPDATE checkpoints SET seq = 9",
    "DELETE FROM checkpoints",
    "UPDATE audit SET actor = 'someone else'",
    "DELETE FROM audit",
]


@pytest.mark.parametrize("statement", STATEMENTS)
async def test_append_only_tables_refuse_changes(
    client: TestClient, editor: dict[str, str], settings: Settings, statement: str
) -> None:
    """UPDATE or DELETE on entries, checkpoints or the audit log aborts and changes nothing."""
    found = await create_incident(client, editor)
    await post_entry(client, editor, found["id"])
    with raw_store(settings) as conn:
        before = [conn.rows(f"SELECT * FROM {t}") for t in ("entries", "checkpoints", "audit")]
        with pytest.raises(INTEGRITY_ERRORS, match="append-only"):
            conn.execute(statement)
        conn.rollback()
        after = [conn.rows(f"SELECT * FROM {t}") for t in ("entries", "checkpoints", "audit")]
    assert after == before and before[0]
