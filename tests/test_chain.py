"""Hash chain and encoding: appends always verify, any changed byte is caught.

The property tests use the real store (``TimelineStore`` on SQLite) on a temporary file: one
appends sequences of entries that Hypothesis invents and checks that the
result verifies; the other changes one byte of one stored field (an entry's
record JSON or hash, a body, a salt, a content key, the signed checkpoint)
directly in the SQLite file and checks that ``check_timeline`` notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broadcaster.errors import Unavailable
from broadcaster.log import chain
from broadcaster.log.signing import Signer
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.store.sqlite import Database
from broadcaster.store.timeline import TimelineStore, read_checkpoint, read_entries
from broadcaster.timeline.model import Actor, NewEntry

ACTOR = Actor("值班编辑", "崂山区应急管理局", "editor", 1)
SIGNER = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
INCIDENT = {"title": "崂山区沙子口街道山洪", "severity": "severe", "id": "flood"}


def test_canonical_json_is_sorted_compact_and_literal() -> None:
    """Canonical JSON sorts keys, drops white space and keeps Chinese literal."""
    assert chain.canonical_json({"b": 1, "a": ["水", None, True]}) == (
        '{"a":["水",null,true],"b":1}'.encode()
    )


@pytest.mark.parametrize("value", [1.5, {"x": [0.0]}, float("nan")])
def test_canonical_json_refuses_floats(value: Any) -> None:
    """Floats are refused: JCS would re-format them and hashes would disagree."""
    with pytest.raises(TypeError):
        chain.canonical_json(value)


def test_genesis_hash_depends_on_the_incident() -> None:
    """Two incidents start from different genesis hashes, so chains cannot be swapped."""
    assert chain.genesis_hash("a") != chain.genesis_hash("b")
    assert chain.genesis_hash("a").startswith("sha256:") and len(chain.genesis_hash("a")) == 71


def test_record_of_needs_every_hashed_field() -> None:
    """A record with a hashed field missing is refused, not hashed without it."""
    entry = {name: None for name in chain.HASHED_FIELDS}
    assert set(chain.record_of(entry)) == set(chain.HASHED_FIELDS)
    del entry["question"]
    with pytest.raises(KeyError):
        chain.record_of(entry)


# An append: (kind, body, figures, sms, target) where target picks an earlier seq.
appends = st.lists(
    st.tuples(
        st.sampled_from(["update", "update", "correction", "status"]),
        st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=40),
        st.none()
        | st.dictionaries(
            st.sampled_from(["deaths", "missing", "x-boats"]), st.integers(0, 10**12), min_size=1
        ),  # fmt: skip
        st.booleans(),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=8,
)


def new_entry(kind: str, body: str, figures: Any, sms: bool, target: int, head: int, status: str):
    body = body if body.strip() else "水位上涨"
    if kind == "correction" and head:
        return NewEntry(kind, body, corrects=1 + target % head, figures=figures, sms=sms)
    if kind == "status":
        return NewEntry("status", "", status="resolved" if status == "active" else "active")
    return NewEntry("update", body, figures=figures, sms=sms)


async def open_store(path: Path) -> TimelineStore:
    store = TimelineStore(Database(path), SIGNER)
    await store.open()
    await store.create_incident(dict(INCIDENT), ACTOR)
    return store


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(appends)
def test_any_sequence_of_appends_verifies(ops: list[tuple[Any, ...]]) -> None:
    """Whatever entries are appended, in whatever order, the stored timeline verifies."""

    async def scenario(path: Path) -> None:
        store = await open_store(path)
        try:
            status = "active"
            for seq, (kind, body, figures, sms, target) in enumerate(ops):
                entry, checkpoint = await store.append(
                    "flood", new_entry(kind, body, figures, sms, target, seq, status), ACTOR
                )
                status = entry.record["status"] or status
                assert entry.seq == seq + 1 and checkpoint["seq"] == entry.seq
            entries = [json.loads(e.to_json()) for e in await store.entries("flood")]
            checkpoint = await store.checkpoint("flood")
        finally:
            await store.close()
        report = check_timeline("flood", entries, checkpoint, SIGNER.keys_document())
        assert report.ok, report.problems
        assert [e["seq"] for e in entries] == list(range(1, len(ops) + 1))

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "t.db"))


@pytest.fixture(scope="module")
def stored_timeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A timeline of five entries of every core kind, its triggers dropped for tampering."""
    path = tmp_path_factory.mktemp("chain") / "t.db"

    async def build() -> None:
        store = await open_store(path)
        try:
            await store.append("flood", NewEntry("update", "水位上涨，请转移。"), ACTOR)
            await store.append(
                "flood", NewEntry("update", "已转移 3400 人", figures={"evacuated": 3400}), ACTOR
            )  # noqa: E501
            await store.append("flood", NewEntry("correction", "实为 3500 人", corrects=2), ACTOR)
            await store.append("flood", NewEntry("status", "", status="resolved"), ACTOR)
            await store.append(
                "flood", NewEntry("update", "Roads reopen at 18:00.", sms=True), ACTOR
            )
        finally:
            await store.close()

    asyncio.run(build())
    with sqlite3.connect(path) as conn:
        for name in ("entries_no_update", "entries_no_delete", "checkpoints_no_update"):
            conn.execute(f"DROP TRIGGER {name}")
    return path


def served(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Read the timeline the way the store serves it, then through JSON as a client sees it."""
    entries = [json.loads(e.to_json()) for e in read_entries(conn, "flood")]
    return entries, read_checkpoint(conn, "flood")


#: Every stored field a tamperer could change: (table, column, key column).
STORED_FIELDS = [
    ("entries", "record", "seq"),
    ("entries", "hash", "seq"),
    ("contents", "body", "content_hash"),
    ("contents", "salt", "content_hash"),
    ("contents", "content_hash", "content_hash"),
    ("checkpoints", "record", "seq"),
]


def test_the_untouched_timeline_verifies(stored_timeline: Path) -> None:
    """The timeline the tamper test starts from is intact (so a failure there means tampering)."""
    with sqlite3.connect(stored_timeline) as conn:
        conn.row_factory = sqlite3.Row
        entries, checkpoint = served(conn)
    assert len(entries) == 5
    assert check_timeline("flood", entries, checkpoint, SIGNER.keys_document()).ok


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_changed_byte_is_detected(stored_timeline: Path, data: st.DataObject) -> None:
    """Changing any one byte of any stored field of any entry makes verification fail."""
    table, column, key = data.draw(st.sampled_from(STORED_FIELDS), label="field")
    conn = sqlite3.connect(stored_timeline, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            f"SELECT {key} AS k, {column} AS v FROM {table} WHERE {column} != ''"
        ).fetchall()
        if table == "checkpoints":
            rows = rows[-1:]  # only the latest is served; older ones are history
        row = data.draw(st.sampled_from(rows), label="row")
        original = row["v"].encode("utf-8")
        position = data.draw(st.integers(0, len(original) - 1), label="position")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]))
        changed = original[:position] + bytes([byte]) + original[position + 1 :]
        try:
            text = changed.decode("utf-8")
        except UnicodeDecodeError:
            assume(False)  # SQLite TEXT holds UTF-8; such a file is not readable as a timeline
        if column == "record":
            with contextlib.suppress(ValueError):  # broken JSON: reading must fail below
                assume(json.loads(text) != json.loads(row["v"]))  # white space is no change
        conn.execute("BEGIN")
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (text, row["k"]))
        try:
            entries, checkpoint = served(conn)
        except (Unavailable, sqlite3.Error):
            return  # the store refuses to serve it: the API answers 5xx, verify exits 2
        finally:
            conn.execute("ROLLBACK")
        report = check_timeline("flood", entries, checkpoint, SIGNER.keys_document())
        assert not report.ok, f"{table}.{column} of {row['k']} changed at byte {position}"
    finally:
        conn.close()
