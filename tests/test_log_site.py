"""The site's transparency log: what /log serves, and what ``verify`` catches with it.

Every test runs on both stores. Tampering goes to the store underneath
(``raw_store``, triggers off), as someone holding the database would; the
"key holder" attacks also use the site's signing key.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry
from log_sites import Site, log_at, verify
from raw_store import raw_store

from broadcaster.appkeys import SIGNER
from broadcaster.cli import main
from broadcaster.log import chain, records, tiles
from broadcaster.log.checkpoint import parse_checkpoint
from broadcaster.log.merkle import leaf_hash
from broadcaster.log.note import Ed25519Verifier, parse_note, verify_note
from broadcaster.log.signing import Signer, b64url
from broadcaster.settings import Settings
from broadcaster.store import log as log_store

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "archive.schema.json"


def base(client: TestClient) -> str:
    return str(client.make_url("/"))


async def get_bytes(client: TestClient, path: str) -> tuple[int, bytes, Any]:
    response = await client.get(path)
    return response.status, await response.read(), response.headers


@pytest.fixture
async def timeline(client: TestClient, editor: dict[str, str]) -> str:
    """An incident with three entries, all in the log (4 leaves)."""
    incident = (await create_incident(client, editor, area="崂山区"))["id"]
    for n in range(3):
        await post_entry(client, editor, incident, body=f"第{n + 1}次通报：水位 {n} 米")
    await log_at(base(client), 4)
    return incident


async def test_the_log_serves_creation_and_entries_as_c2sp_tiles(
    client: TestClient, timeline: str
) -> None:
    """Checkpoint, vkey, entry bundle and hash tile agree with the timeline and each other."""
    text, checkpoint = await log_at(base(client), 4)
    vkey = (await (await client.get("/log/vkey")).text()).strip()
    assert vkey.startswith("example.test/log+")
    verify_note(text, [Ed25519Verifier.from_vkey(vkey)])
    assert checkpoint.origin == "example.test/log" and checkpoint.size == 4
    status, _, headers = await get_bytes(client, "/log/tile/entries/000.p/4")
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]
    response = await client.get("/log/tile/entries/000.p/4", auto_decompress=False)
    bundle = gzip.decompress(await response.read())
    leaves = tiles.parse_entry_bundle(bundle)
    incident = await (await client.get(f"/api/incidents/{timeline}")).json()
    entries = (await (await client.get(f"/api/incidents/{timeline}/entries")).json())["entries"]
    creation = incident["creation"]
    assert records.creation_hash(creation["record"]) == creation["hash"]
    assert creation["record"]["area"] == "崂山区" and creation["record"]["advice"] is None
    expected = [records.incident_leaf(timeline, 0, creation["hash"])]
    expected += [records.incident_leaf(timeline, e["seq"], e["hash"]) for e in entries]
    assert leaves == expected
    status, tile, _ = await get_bytes(client, "/log/tile/0/000.p/4")
    assert tile == b"".join(leaf_hash(x) for x in leaves)
    root = tiles.root_from_tiles(4, lambda t: tile[: t.width * 32])
    assert root == checkpoint.root_hash
    for missing in ("/log/tile/0/001", "/log/tile/entries/000.p/9", "/log/tile/0/0", "/log/tile/x"):
        assert (await client.get(missing)).status == 404, missing
    keys = await (await client.get("/.well-known/broadcaster-keys.json")).json()
    (key,) = keys["keys"]
    assert key["vkey"] == vkey == keys["log"]["vkey"]
    assert key["valid_from"] and key["valid_until"] is None


async def test_verify_checks_the_log_and_remembers_it(
    client: TestClient, timeline: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An honest site verifies (exit 0) and the checkpoint is remembered per origin."""
    state = tmp_path / "state.json"
    assert await verify(base(client), timeline, "--state", str(state)) == 0
    assert "in log example.test/log at size 4" in capsys.readouterr().out
    remembered = json.loads(state.read_text("utf-8"))["logs"]["example.test/log"]
    assert parse_checkpoint(parse_note(remembered["checkpoint"]).text).size == 4
    assert remembered["key_id"] == client.app[SIGNER].key_id


async def test_rollback_without_a_key_is_caught(
    client: TestClient,
    settings: Settings,
    timeline: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deleting the last entry with its checkpoint fails on the log; deleting the leaf too fails
    against the checkpoint this reader saw before."""
    state = str(tmp_path / "state.json")
    assert await verify(base(client), timeline, "--state", state) == 0
    with raw_store(settings, unguarded=True) as conn:
        conn.execute("DELETE FROM entries WHERE seq = 3")
        conn.execute("DELETE FROM checkpoints WHERE seq = 3")
        conn.execute("UPDATE incidents SET head_seq = 2")
    capsys.readouterr()
    assert await verify(base(client), timeline, "--state", str(tmp_path / "new.json")) == 1
    err = capsys.readouterr().err
    assert "TAMPERED: first bad seq 3" in err and "rollback" in err
    with raw_store(settings, unguarded=True) as conn:  # now the log too, as far as it goes
        conn.execute("DELETE FROM log_leaves WHERE idx = 3")
        conn.execute("DELETE FROM log_hashes WHERE level = 0 AND idx = 3")
        conn.execute("DELETE FROM log_checkpoints WHERE size > 3")
    await log_at(base(client), 3)
    assert await verify(base(client), timeline, "--state", str(tmp_path / "fresh.json")) == 0
    capsys.readouterr()
    assert await verify(base(client), timeline, "--state", state) == 1
    assert "the log shrank" in capsys.readouterr().err


async def test_a_deleted_incident_is_tampering_not_unknown(
    client: TestClient, settings: Settings, timeline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An incident the log holds but the site no longer serves exits 1 naming it."""
    with raw_store(settings, unguarded=True) as conn:
        conn.execute("DELETE FROM checkpoints WHERE incident = ?", (timeline,))
        conn.execute("DELETE FROM entries WHERE incident = ?", (timeline,))
        conn.execute("DELETE FROM incidents WHERE id = ?", (timeline,))
    assert (await client.get(f"/api/incidents/{timeline}")).status == 404
    assert await verify(base(client), timeline) == 1
    assert f"incident {timeline} is in the log" in capsys.readouterr().err
    assert await verify(base(client), "never-was") == 2


def rewrite(settings: Settings, signer: Any, incident: str, seq: int) -> None:
    """Rewrite entry ``seq``, drop every later one, re-sign, and rebuild the whole log.

    What an operator holding the database and the signing key can do: every
    hash, checkpoint and the log itself are consistent and signed afterwards.
    """
    with raw_store(settings, unguarded=True) as conn:
        rows = conn.rows(
            "SELECT seq, record FROM entries WHERE incident = ? ORDER BY seq", (incident,)
        )
        conn.execute("DELETE FROM entries WHERE incident = ? AND seq > ?", (incident, seq))
        conn.execute("DELETE FROM checkpoints WHERE incident = ?", (incident,))
        record = json.loads(rows[seq - 1][1])
        body, salt = "水位已回落，无需转移。", "00" * 16
        conn.execute(
            "UPDATE contents SET content_hash = ?, salt = ?, body = ? WHERE content_hash = ?",
            (chain.content_hash(salt, body), salt, body, record["content_hash"]),
        )
        record["content_hash"] = chain.content_hash(salt, body)
        digest = chain.entry_hash(record)
        conn.execute(
            "UPDATE entries SET record = ?, hash = ? WHERE incident = ? AND seq = ?",
            (json.dumps(record, ensure_ascii=False), digest, incident, seq),
        )
        if conn.dialect == "postgresql":
            conn.execute(
                "UPDATE entries SET content_hash = ? WHERE incident = ? AND seq = ?",
                (record["content_hash"], incident, seq),
            )
        checkpoint = signer.sign(incident, seq, digest, record["posted_at"])
        conn.execute(
            "INSERT INTO checkpoints (incident, seq, record) VALUES (?, ?, ?)",
            (incident, seq, json.dumps(checkpoint)),
        )
        conn.execute(
            "UPDATE incidents SET head_seq = ?, head_hash = ? WHERE id = ?", (seq, digest, incident)
        )
        for table in ("log_leaves", "log_hashes", "log_checkpoints", "log_cosignatures",
                      "incident_creations"):  # fmt: skip
            conn.execute(f"DELETE FROM {table}")
        if conn.dialect == "sqlite":
            conn.conn.row_factory = sqlite3.Row
        log_store.build_from_timelines(conn.conn)


async def test_a_rewrite_with_the_key_fails_against_the_remembered_log(
    client: TestClient,
    editor: dict[str, str],
    settings: Settings,
    timeline: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seq 2 rewritten, seq 3 erased, all re-signed and re-logged: a reader who saw the log
    before is told its history was rewritten."""
    state = str(tmp_path / "state.json")
    assert await verify(base(client), timeline, "--state", state) == 0
    rewrite(settings, client.app[SIGNER], timeline, 2)
    for _ in range(2):  # the rewritten log grows past the size the reader saw
        await post_entry(client, editor, timeline, body="水位已回落。")
    await log_at(base(client), 5)
    assert await verify(base(client), timeline, "--state", str(tmp_path / "new.json")) == 0
    capsys.readouterr()
    assert await verify(base(client), timeline, "--state", state) == 1
    assert "history was rewritten or forked" in capsys.readouterr().err


async def test_a_rewrite_that_keeps_the_log_is_caught_by_the_log(
    client: TestClient, settings: Settings, timeline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewriting a timeline without touching the log leaves the old hashes in the log."""
    signer = client.app[SIGNER]
    with raw_store(settings, unguarded=True) as conn:
        text = conn.rows("SELECT record FROM entries WHERE incident = ? AND seq = 3",
                         (timeline,))[0][0]  # fmt: skip
        record = json.loads(text)
        record["sms"] = True
        digest = chain.entry_hash(record)
        conn.execute(
            "UPDATE entries SET record = ?, hash = ? WHERE incident = ? AND seq = 3",
            (json.dumps(record, ensure_ascii=False), digest, timeline),
        )
        conn.execute("DELETE FROM checkpoints WHERE incident = ? AND seq = 3", (timeline,))
        conn.execute(
            "INSERT INTO checkpoints (incident, seq, record) VALUES (?, 3, ?)",
            (timeline, json.dumps(signer.sign(timeline, 3, digest, record["posted_at"]))),
        )
        conn.execute("UPDATE incidents SET head_hash = ? WHERE id = ?", (digest, timeline))
    assert await verify(base(client), timeline) == 1
    assert "seq 3: the entry's hash is not the one in the log" in capsys.readouterr().err


async def test_a_store_without_a_log_gets_one_built_at_start(settings: Settings) -> None:
    """An installation from before the log (or migrated from one) is logged in commit order."""
    site = await Site(settings.with_(public_url="http://example.test")).start()
    try:
        first = await site.incident()
        await site.post(first)
        second = await site.incident()
        await site.post(second)
        await site.post(first)
        await log_at(site.url, 5)
    finally:
        await site.stop()
    with raw_store(settings, unguarded=True) as conn:
        before = conn.rows("SELECT idx, data FROM log_leaves ORDER BY idx")
        for table in ("log_leaves", "log_hashes", "log_checkpoints", "incident_creations"):
            conn.execute(f"DELETE FROM {table}")
    await site.start()
    try:
        await log_at(site.url, 5)
        with raw_store(settings) as conn:
            assert conn.rows("SELECT idx, data FROM log_leaves ORDER BY idx") == before
        assert await verify(site.url, first) == 0
    finally:
        await site.stop()
    await site.start()  # idempotent: a second start adds nothing
    try:
        with raw_store(settings) as conn:
            assert conn.rows("SELECT COUNT(*) FROM log_leaves") == [(5,)]
    finally:
        await site.stop()


async def test_key_rotation_is_announced_and_every_key_stays_listed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``key rotate`` the old key refuses to start, the new one serves, readers who saw
    the old key accept the announced change, and old checkpoints still verify."""
    if settings.database_url:
        monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    settings = settings.with_(public_url="http://example.test")
    site = await Site(settings).start()
    state = str(tmp_path / "state.json")
    try:
        incident = await site.incident()
        await site.post(incident)
        await log_at(site.url, 2)
        assert await verify(site.url, incident, "--state", state) == 0
        old_key = site.app[SIGNER].key_id if site.app else ""
    finally:
        await site.stop()
    old_seed = (settings.data_dir / "signing.key").read_bytes()
    assert (
        await asyncio.to_thread(main, ["key", "rotate", "--data-dir", str(settings.data_dir)]) == 0
    )
    assert (settings.data_dir / "signing.key").read_bytes() != old_seed
    await site.start()
    try:
        assert site.app is not None and site.app[SIGNER].key_id != old_key
        await site.post(incident)
        _, checkpoint = await log_at(site.url, 4)
        assert await verify(site.url, incident, "--state", state) == 0
        keys = await site.call("GET", "/.well-known/broadcaster-keys.json")
        old, new = keys["keys"]
        assert old["key_id"] == old_key and old["valid_until"] == new["valid_from"]
        assert new["valid_until"] is None and new["announced_at_leaf"] == 2
        async with (
            aiohttp.ClientSession() as session,
            session.get(site.url + "/log/tile/entries/000.p/3") as response,
        ):
            bundle = tiles.parse_entry_bundle(await response.read())
        announcement = records.parse_leaf(bundle[2])
        assert isinstance(announcement, records.KeyAnnouncement)
        assert announcement.replaces == old_key and announcement.key_id == new["key_id"]
    finally:
        await site.stop()
    (settings.data_dir / "signing.key").write_bytes(old_seed)
    with pytest.raises(Exception, match="was retired"):
        await site.start()
    await site.stop()


async def test_a_silent_key_change_is_caught(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new key put in place without an announcement: the node refuses it; forced in by
    rewriting the key table and re-signing, a reader who saw the old key refuses it."""
    settings = settings.with_(public_url="http://example.test")
    site = await Site(settings).start()
    state = str(tmp_path / "state.json")
    try:
        incident = await site.incident()
        await site.post(incident)
        await log_at(site.url, 2)
        assert await verify(site.url, incident, "--state", state) == 0
    finally:
        await site.stop()
    (settings.data_dir / "signing.key").unlink()
    with pytest.raises(Exception, match="not in the site's key history"):
        await site.start()
    await site.stop()
    signer = Signer.load(settings.data_dir)
    with raw_store(settings, unguarded=True) as conn:
        conn.execute("DELETE FROM signing_keys")
        conn.execute(
            "INSERT INTO signing_keys (key_id, public_key, valid_from) VALUES (?, ?, ?)",
            (signer.key_id, b64url(signer.public_raw), "2026-01-01T00:00:00.000Z"),
        )
        for row in conn.rows("SELECT record FROM checkpoints"):
            old = json.loads(row[0])
            again = signer.sign(old["incident"], old["seq"], old["hash"], old["signed_at"])
            conn.execute(
                "UPDATE checkpoints SET record = ? WHERE incident = ? AND seq = ?",
                (json.dumps(again), old["incident"], old["seq"]),
            )
        conn.execute("DELETE FROM log_checkpoints")
    await site.start()
    try:
        await site.post(incident)
        await log_at(site.url, 3)
        assert await verify(site.url, incident, "--state", str(tmp_path / "new.json")) == 0
        capsys.readouterr()
        assert await verify(site.url, incident, "--state", state) == 1
        assert "a key change the log never announced" in capsys.readouterr().err
    finally:
        await site.stop()


async def test_the_archive_proves_its_leaves_and_follows_its_schema(
    client: TestClient,
    settings: Settings,
    timeline: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``export`` adds the log checkpoint and inclusion proofs; the file validates against its
    JSON Schema; ``verify --file`` checks the proofs offline and catches a changed leaf."""
    if settings.database_url:
        monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)
    target = tmp_path / "a.json"
    argv = ["export", timeline, "--data-dir", str(settings.data_dir), "-o", str(target)]
    assert await asyncio.to_thread(main, argv) == 0
    data = json.loads(target.read_text("utf-8"))
    schema = json.loads(SCHEMA.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert [leaf["seq"] for leaf in data["log"]["leaves"]] == [0, 1, 2, 3]
    assert await asyncio.to_thread(main, ["verify", "--file", str(target)]) == 0
    data["log"]["leaves"][2]["entry"] = data["log"]["leaves"][2]["entry"].replace(
        '"seq":2', '"seq":9'
    )
    target.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["verify", "--file", str(target)]) == 1
    assert "is not included in the log checkpoint" in capsys.readouterr().err


def test_the_origin_and_witnesses_come_from_the_environment() -> None:
    """The origin defaults to the public URL without its scheme; a bad witness stops the start."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from broadcaster.errors import ConfigError
    from broadcaster.log.cosignature import Cosigner

    env = {"BROADCASTER_PUBLIC_URL": "https://yjj.qingdao.gov.cn/"}
    assert Settings.from_env(env).origin == "yjj.qingdao.gov.cn/log"
    assert Settings.from_env({**env, "BROADCASTER_LOG_ORIGIN": "qd.cn/x"}).origin == "qd.cn/x"
    vkey = Cosigner("w.example/1", Ed25519PrivateKey.generate()).vkey
    spec = f"{vkey}@https://w.example/,{vkey}@http://10.0.0.9:8090"
    assert len(Settings.from_env({"BROADCASTER_WITNESSES": spec}).witnesses) == 2
    for bad in ("nokey@https://w.example", f"{vkey}@ftp://w.example", f"{vkey}"):
        with pytest.raises(ConfigError, match="BROADCASTER_WITNESSES"):
            Settings.from_env({"BROADCASTER_WITNESSES": bad})
    with pytest.raises(ConfigError, match="LOG_ORIGIN"):
        Settings.from_env({"BROADCASTER_LOG_ORIGIN": "a b"})
