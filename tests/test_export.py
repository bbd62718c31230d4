"""Tests for `broadcaster export` and `broadcaster verify --file`: the offline archive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from broadcaster.appkeys import DB, STORE
from broadcaster.cli import main
from broadcaster.settings import Settings
from broadcaster.store.export import read_record
from broadcaster.store.pg_conn import dialect_of
from broadcaster.timeline.model import Actor, NewEntry
from tests.conftest import TIMEOUT, create_incident, post_entry


async def run(*argv: str) -> int:
    """Run the command line in a thread, as a shell would, off the server's loop."""
    return await asyncio.to_thread(main, list(argv))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))


def save(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")


@pytest.fixture(autouse=True)
def configured_store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the command line at the test's store, as the service's environment would."""
    if settings.database_url:
        monkeypatch.setenv("BROADCASTER_DATABASE_URL", settings.database_url)


@pytest.fixture
async def archive(
    client: TestClient,
    settings: Settings,
    editor: dict[str, str],
    admin: dict[str, str],
    tmp_path: Path,
) -> Path:
    """An exported incident with figures, a correction and a redaction."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid, figures={"deaths": 1, "evacuated": 3400})
    await post_entry(client, editor, iid, body="张某某已被送医，其住址为沙子口某村。")
    await post_entry(client, editor, iid, kind="correction", corrects=1, body="死亡人数更正。",
                     figures={"deaths": 0})  # fmt: skip
    redacted = await client.post(
        f"/api/incidents/{iid}/entries/2/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "涉及个人隐私"},
        headers=admin,
    )
    assert redacted.status == 201
    target = tmp_path / "archive.json"
    assert await run("export", iid, "--data-dir", str(settings.data_dir), "-o", str(target)) == 0
    return target


async def test_export_then_verify_offline(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The archive holds every entry and checkpoint, and verifies with no network (exit 0)."""
    data = await asyncio.to_thread(load, archive)
    assert data["format"] == "broadcaster-archive/2"
    assert [e["seq"] for e in data["entries"]] == [1, 2, 3, 4]
    assert [c["seq"] for c in data["checkpoints"]] == [1, 2, 3, 4]
    assert data["incident"]["head"]["seq"] == 4
    assert data["keys"]["keys"][0]["key_id"] == data["checkpoints"][-1]["key_id"]
    assert data["entries"][1]["redacted"] is True and data["entries"][1]["body"] == ""
    assert "张某某" not in await asyncio.to_thread(archive.read_text, "utf-8")
    capsys.readouterr()
    assert await run("verify", "--file", str(archive)) == 0
    assert "intact: 4 entries, head seq 4" in capsys.readouterr().out


def _body(data: dict[str, Any]) -> None:
    data["entries"][0]["body"] = data["entries"][0]["body"].replace("转移", "撤离")


def _figure(data: dict[str, Any]) -> None:
    data["entries"][2]["figures"]["deaths"] = 1


def _drop_entry(data: dict[str, Any]) -> None:
    del data["entries"][2]


def _truncate(data: dict[str, Any]) -> None:
    del data["entries"][-1], data["checkpoints"][-1]


def _old_checkpoint(data: dict[str, Any]) -> None:
    data["checkpoints"][1]["hash"] = data["checkpoints"][2]["hash"]


def _foreign_key(data: dict[str, Any]) -> None:
    data["keys"]["keys"][0]["public_key"] = "A" * 43


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_body, "seq 1: content_hash does not match"),
        (_figure, "seq 3: hash does not match"),
        (_drop_entry, "seq 3: expected seq 3, found 4"),
        (_truncate, "is not the last entry"),
        (_old_checkpoint, "seq 2: checkpoint: checkpoint signature does not verify"),
        (_foreign_key, "public key does not match its key_id"),
    ],
)
async def test_tampered_export_fails(
    archive: Path,
    tamper: Callable[[dict[str, Any]], None],
    problem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Any change to entries, checkpoints or keys exits 1 and says what is wrong where."""
    data = await asyncio.to_thread(load, archive)
    tamper(data)
    await asyncio.to_thread(save, archive, data)
    capsys.readouterr()
    assert await run("verify", "--file", str(archive)) == 1
    err = capsys.readouterr().err
    assert err.startswith("TAMPERED: first bad seq ")
    assert problem in err


async def test_unusable_input_exits_2(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    """A missing file, a file that is no archive, an unknown incident or no target exit 2."""
    other = tmp_path / "other.json"
    await asyncio.to_thread(save, other, {"entries": []})
    assert await run("verify", "--file", str(tmp_path / "missing.json")) == 2
    assert await run("verify", "--file", str(other)) == 2
    assert await run("verify") == 2
    assert await run("export", "nope", "--data-dir", str(settings.data_dir)) == 2


class AppendMidway:
    """A reader connection that has the service append an entry right after reading the incident."""

    def __init__(self, conn: Any, append: Callable[[], None]) -> None:
        self.conn, self.append, self.dialect = conn, append, dialect_of(conn)

    def execute(self, sql: str, params: Any = ()) -> Any:
        result = self.conn.execute(sql, params)
        if "FROM incidents" in sql and self.append is not None:
            append, self.append = self.append, None
            append()
        return result


async def test_export_reads_one_snapshot(client: TestClient, editor: dict[str, str]) -> None:
    """An entry committed while export reads is wholly outside it: head, entries, checkpoints."""
    iid = (await create_incident(client, editor))["id"]
    await post_entry(client, editor, iid)
    loop = asyncio.get_running_loop()
    author = Actor("值班编辑", "应急管理局", "editor")

    def append() -> None:  # runs on the reader thread, mid-snapshot, and waits for the commit
        new = NewEntry("update", "水位回落。")
        done = asyncio.run_coroutine_threadsafe(client.app[STORE].append(iid, new, author), loop)
        done.result(TIMEOUT)

    db = client.app[DB]
    record = await db.read(lambda conn: read_record(AppendMidway(conn, append), iid))
    assert record is not None
    assert record.incident["head"]["seq"] == 1
    assert [e.seq for e in record.entries] == [1]
    assert [c["seq"] for c in record.checkpoints] == [1]
    after = await db.read(lambda conn: read_record(conn, iid))
    assert after is not None and [e.seq for e in after.entries] == [1, 2]
