"""``broadcaster verify`` against a served timeline whose store is tampered with.

The server runs in-process on a real port; the command runs in a thread
through ``broadcaster.cli.main``, exactly as the command line calls it.
Tampering goes straight to the store after switching off the triggers that
otherwise refuse it, as someone with the disk in hand (SQLite) or the
database's superuser (PostgreSQL) would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry
from log_sites import log_at
from raw_store import raw_store
from serve_process import free_port

from broadcaster.appkeys import SIGNER
from broadcaster.cli import main
from broadcaster.log import chain
from broadcaster.settings import Settings


async def verify(client: TestClient, incident: str, *extra: str) -> int:
    """Run ``broadcaster verify`` against the test server and return its exit code."""
    base = str(client.make_url("/"))
    return await asyncio.to_thread(main, ["verify", base, incident, *extra])


@pytest.fixture
async def timeline(client: TestClient, editor: dict[str, str]) -> str:
    """An incident with three entries."""
    incident = (await create_incident(client, editor))["id"]
    for n in range(3):
        await post_entry(client, editor, incident, body=f"第{n + 1}次通报：水位 {n} 米")
    return incident


def tamper(settings: Settings, *statements: str) -> None:
    """Switch off the append-only triggers and run ``statements`` on the live store."""
    with raw_store(settings, unguarded=True) as conn:
        for statement in statements:
            conn.execute(statement)


def content_key(seq: int) -> str:
    """Return SQL naming entry ``seq``'s content key (its record holds it), on both backends."""
    return (
        "(SELECT c.content_hash FROM contents c, entries e"
        f" WHERE e.seq = {seq} AND e.record LIKE '%' || c.content_hash || '%')"
    )


async def test_an_intact_timeline_exits_0(
    client: TestClient, timeline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untouched timeline verifies: exit 0, and the report names the head."""
    assert await verify(client, timeline) == 0
    assert "intact: 3 entries, head seq 3" in capsys.readouterr().out


TAMPERING = {
    "body text changed": (
        [f"UPDATE contents SET body = body || '。' WHERE content_hash = {content_key(2)}"],
        2,
    ),
    "hash changed": ([f"UPDATE entries SET hash = 'sha256:{'00' * 32}' WHERE seq = 2"], 2),
    "record field changed": (
        [
            "UPDATE entries SET record = replace(record, '\"sms\": false', '\"sms\": true')"
            " WHERE seq = 2"
        ],
        2,
    ),
    "last entry deleted": (["DELETE FROM entries WHERE seq = 3"], 3),
    "entries reordered": (
        [
            "UPDATE entries SET seq = -2 WHERE seq = 2",
            "UPDATE entries SET seq = 2 WHERE seq = 3",
            "UPDATE entries SET seq = 3 WHERE seq = -2",
        ],
        2,
    ),
    "body deleted without a redaction": (
        [f"DELETE FROM contents WHERE content_hash = {content_key(1)}"],
        1,
    ),
}


@pytest.mark.parametrize(("statements", "first_bad"), TAMPERING.values(), ids=TAMPERING.keys())
async def test_tampering_exits_1_naming_the_first_bad_seq(
    client: TestClient,
    settings: Settings,
    timeline: str,
    capsys: pytest.CaptureFixture[str],
    statements: list[str],
    first_bad: int,
) -> None:
    """Each edit of the stored timeline makes verify exit 1 and name the first bad seq."""
    tamper(settings, *statements)
    assert await verify(client, timeline) == 1
    assert f"TAMPERED: first bad seq {first_bad}\n" in capsys.readouterr().err


async def test_an_unreachable_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening at the address: verify could not check, exit 2."""
    code = await asyncio.to_thread(main, ["verify", f"http://127.0.0.1:{free_port()}", "x"])
    assert code == 2
    assert "could not check" in capsys.readouterr().err


async def test_an_unknown_incident_exits_2(client: TestClient) -> None:
    """An incident the server does not know cannot be checked: exit 2."""
    assert await verify(client, "no-such-incident") == 2


async def test_a_missing_checkpoint_file_exits_2(client: TestClient, timeline: str) -> None:
    """A --checkpoint file that cannot be read is 'could not check', not 'tampered'."""
    assert await verify(client, timeline, "--checkpoint", "/nonexistent/cp.json") == 2


async def saved_checkpoint(client: TestClient, incident: str, path: Path) -> Path:
    checkpoint = await (await client.get(f"/api/incidents/{incident}/checkpoint")).json()
    await asyncio.to_thread(path.write_text, json.dumps(checkpoint), "utf-8")
    return path


async def test_a_saved_checkpoint_passes_on_an_extended_log(
    client: TestClient, editor: dict[str, str], timeline: str, tmp_path: Path
) -> None:
    """A checkpoint saved at seq 3 still verifies after more entries are appended."""
    saved = await saved_checkpoint(client, timeline, tmp_path / "cp.json")
    await post_entry(client, editor, timeline)
    await post_entry(client, editor, timeline)
    assert await verify(client, timeline, "--checkpoint", str(saved)) == 0


def rewrite_history(settings: Settings, client: TestClient, incident: str, seq: int) -> None:
    """Change entry ``seq``'s text, re-chain every later entry and re-sign the head.

    This is what an insider with the database and the server's signing key can
    do: the result is internally consistent and signed by the genuine key.
    """
    signer = client.app[SIGNER]
    with raw_store(settings, unguarded=True) as conn:
        rows = conn.rows(
            "SELECT seq, record FROM entries WHERE incident = ? ORDER BY seq", (incident,)
        )
        prev = chain.genesis_hash(incident)
        for row_seq, text in rows:
            record = json.loads(text)
            if row_seq == seq:
                body, salt = "水位已回落，无需转移。", "00" * 16
                conn.execute(
                    "UPDATE contents SET content_hash = ?, salt = ?, body = ?"
                    " WHERE content_hash = ?",
                    (chain.content_hash(salt, body), salt, body, record["content_hash"]),
                )
                record["content_hash"] = chain.content_hash(salt, body)
            record["prev_hash"] = prev
            prev = chain.entry_hash(record)
            conn.execute(
                "UPDATE entries SET record = ?, hash = ? WHERE incident = ? AND seq = ?",
                (json.dumps(record, ensure_ascii=False), prev, incident, row_seq),
            )
            if conn.dialect == "postgresql":  # entries there keep the content key in a column too
                conn.execute(
                    "UPDATE entries SET content_hash = ? WHERE incident = ? AND seq = ?",
                    (record["content_hash"], incident, row_seq),
                )
        head = rows[-1][0]
        checkpoint = signer.sign(incident, head, prev, "2026-11-27T00:00:00.000Z")
        conn.execute("DELETE FROM checkpoints WHERE incident = ?", (incident,))
        conn.execute(
            "INSERT INTO checkpoints (incident, seq, record) VALUES (?, ?, ?)",
            (incident, head, json.dumps(checkpoint)),
        )
        conn.execute("UPDATE incidents SET head_hash = ? WHERE id = ?", (prev, incident))


@pytest.mark.slow
async def test_a_saved_checkpoint_catches_a_re_signed_rewrite(
    client: TestClient,
    editor: dict[str, str],
    settings: Settings,
    timeline: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rewrite re-signed with the server's key passes alone, not against a saved checkpoint."""
    saved = await saved_checkpoint(client, timeline, tmp_path / "cp.json")
    await post_entry(client, editor, timeline)
    await log_at(str(client.make_url("/")), 5)  # the creation and 4 entries are logged
    rewrite_history(settings, client, timeline, 2)
    # Without the log only the saved head could tell; the log still holds the old hashes.
    assert await verify(client, timeline) == 1
    capsys.readouterr()
    assert await verify(client, timeline, "--checkpoint", str(saved)) == 1
    err = capsys.readouterr().err
    assert "TAMPERED: first bad seq 2\n" in err  # the log names the rewritten entry itself
    assert "history was rewritten" in err
