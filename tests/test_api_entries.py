"""The entries API: posting, reading, the checkpoint, and every refusal leaving nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry
from test_jsonbody import MALFORMED

from broadcaster.app import create_app
from broadcaster.log import chain
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.settings import Settings

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def incident(client: TestClient, editor: dict[str, str]) -> str:
    """An incident with one entry already on its timeline."""
    found = await create_incident(client, editor)
    await post_entry(client, editor, found["id"])
    return found["id"]


async def snapshot(client: TestClient, incident_id: str) -> tuple[Any, ...]:
    """Return what a refused request must leave unchanged: head, entries, checkpoint."""
    found = await (await client.get(f"/api/incidents/{incident_id}")).json()
    entries = await (await client.get(f"/api/incidents/{incident_id}/entries")).json()
    checkpoint = await (await client.get(f"/api/incidents/{incident_id}/checkpoint")).json()
    return found["head"], found["status"], entries, checkpoint


async def refused(
    client: TestClient, incident_id: str, status: int, code: str, **request: Any
) -> dict[str, Any]:
    """POST an entry that must be refused with ``status``/``code``; assert nothing changed."""
    before = await snapshot(client, incident_id)
    url = request.pop("url", f"/api/incidents/{incident_id}/entries")
    response = await client.post(url, **request)
    body = await response.json()
    assert (response.status, body["error"]) == (status, code), body
    assert isinstance(body["message"], str) and body["message"]
    assert await snapshot(client, incident_id) == before
    return body


@pytest.mark.parametrize(("name", "raw", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_json_answers_400(
    client: TestClient, editor: dict[str, str], incident: str, name: str, raw: bytes, code: str
) -> None:
    """Malformed JSON is refused with 400 and its own code, and nothing is appended."""
    await refused(client, incident, 400, code, data=raw, headers={**editor, **JSON})


@pytest.mark.parametrize("raw", [b"1", b'"text"', b"[]", b"null", b""])
async def test_a_body_that_is_not_an_object_answers_400(
    client: TestClient, editor: dict[str, str], incident: str, raw: bytes
) -> None:
    """A top-level scalar, a list or an empty body is refused with 400 invalid_json."""
    await refused(client, incident, 400, "invalid_json", data=raw, headers={**editor, **JSON})


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_wrong_content_type_answers_415(
    client: TestClient, editor: dict[str, str], incident: str, ctype: str
) -> None:
    """A body that is not declared as JSON is refused with 415."""
    headers = {**editor, "Content-Type": ctype}
    await refused(
        client, incident, 415, "unsupported_media_type", data=b'{"body": "x"}', headers=headers
    )


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"body": "x", "colour": "red"}, "unknown_field", "colour"),
        ({"body": 5}, "invalid_type", "body"),
        ({"body": "x", "sms": "yes"}, "invalid_type", "sms"),
        ({"body": "x", "sms": None}, "invalid_type", "sms"),
        ({"body": "x", "kind": "rumour"}, "invalid_value", "kind"),
        ({"body": "x", "event_time": "yesterday"}, "invalid_value", "event_time"),
        ({"body": "x", "event_time": "2026-11-26T06:00:00"}, "invalid_value", "event_time"),
        ({"body": "x", "figures": {"deaths": -1}}, "invalid_figure", "figures.deaths"),
        ({"body": "x", "figures": {"deaths": 1.5}}, "invalid_figure", "figures.deaths"),
        ({"body": "x", "figures": {"cows": 1}}, "unknown_figure", "figures.cows"),
        ({"body": "x", "figures": []}, "invalid_type", "figures"),
        ({"body": "a\x00b"}, "forbidden_char", "body"),
        ({"body": "x" * 20_001}, "too_long", "body"),
        ({"body": "   "}, "body_required", "body"),
        ({}, "body_required", "body"),
    ],
)
async def test_bad_fields_answer_422_naming_the_field(
    client: TestClient,
    editor: dict[str, str],
    incident: str,
    payload: dict[str, Any],
    code: str,
    field: str,
) -> None:
    """Unknown, missing, wrongly typed or invalid fields answer 422 naming the field."""
    body = await refused(client, incident, 422, code, json=payload, headers=editor)
    assert body["field"] == field


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"kind": "correction", "body": "更正"}, 422, "corrects_required"),
        ({"kind": "correction", "body": "更正", "corrects": 2}, 422, "corrects_unknown"),
        ({"kind": "correction", "body": "更正", "corrects": 0}, 422, "invalid_value"),
        ({"body": "x", "corrects": 1}, 422, "corrects_not_allowed"),
        ({"body": "x", "status": "resolved"}, 422, "status_not_allowed"),
        ({"kind": "status"}, 422, "status_required"),
        ({"kind": "status", "status": "active"}, 409, "status_unchanged"),
        ({"body": "x", "update_interval_minutes": 30}, 422, "interval_not_allowed"),
    ],
)
async def test_kind_rules_are_enforced(
    client: TestClient,
    editor: dict[str, str],
    incident: str,
    payload: dict[str, Any],
    status: int,
    code: str,
) -> None:
    """Combinations of kind, corrects and status that make no sense are refused."""
    await refused(client, incident, status, code, json=payload, headers=editor)


async def test_a_correction_names_an_earlier_entry(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """A correction is appended and points at the entry it corrects, which stays as it was."""
    before = await (await client.get(f"/api/incidents/{incident}/entries/1")).json()
    entry = await post_entry(client, editor, incident, kind="correction", body="更正", corrects=1)
    assert (entry["seq"], entry["kind"], entry["corrects"]) == (2, "correction", 1)
    after = await (await client.get(f"/api/incidents/{incident}/entries/1")).json()
    assert (before.pop("corrected_by"), after.pop("corrected_by")) == ([], [2])
    assert after == before


async def test_a_status_entry_changes_the_incident(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """A status entry resolves the incident, and is itself on the timeline."""
    entry = await post_entry(client, editor, incident, kind="status", status="resolved", body="")
    assert entry["status"] == "resolved"
    found = await (await client.get(f"/api/incidents/{incident}")).json()
    assert found["status"] == "resolved"
    assert found["head"] == {"seq": entry["seq"], "hash": entry["hash"]}


async def test_the_entry_has_the_contract_shape(client: TestClient, editor: dict[str, str]) -> None:
    """A posted entry carries every contract member, chained to the genesis hash."""
    found = await create_incident(client, editor)
    entry = await post_entry(
        client, editor, found["id"], figures={"injured": 12}, event_time="2026-11-26T14:00:00+08:00"
    )
    assert list(entry)[:8] == [
        "incident", "seq", "kind", "posted_at", "event_time", "author", "body", "html",
    ]  # fmt: skip
    assert entry["author"] == {"name": "值班编辑", "department": "应急管理局"}
    assert entry["event_time"] == "2026-11-26T06:00:00.000Z"
    assert entry["prev_hash"] == chain.genesis_hash(found["id"])
    assert entry["redacted"] is False and entry["approved_by"] is None
    assert entry["hash"] == chain.entry_hash(chain.record_of(entry))
    assert entry["posted_at"].endswith("Z") and len(entry["posted_at"]) == 24


async def test_unknown_incident_answers_404(client: TestClient, editor: dict[str, str]) -> None:
    """Posting to or reading an unknown incident answers 404 incident_not_found."""
    for response in (
        await client.post("/api/incidents/nope/entries", json={"body": "x"}, headers=editor),
        await client.get("/api/incidents/nope/entries"),
        await client.get("/api/incidents/nope/checkpoint"),
    ):
        assert response.status == 404
        assert (await response.json())["error"] == "incident_not_found"


async def test_unknown_entry_and_route_answer_404_json(client: TestClient, incident: str) -> None:
    """An unknown seq or route answers a JSON 404 with its own code."""
    response = await client.get(f"/api/incidents/{incident}/entries/99")
    assert (response.status, (await response.json())["error"]) == (404, "entry_not_found")
    response = await client.get("/api/no-such-thing")
    assert response.content_type == "application/json"
    assert (response.status, (await response.json())["error"]) == (404, "not_found")


async def test_body_over_one_mib_answers_413(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """A body over the default 1 MiB limit is refused with 413 and nothing is appended."""
    raw = b'{"body": "' + b"x" * (1024 * 1024) + b'"}'
    await refused(client, incident, 413, "payload_too_large", data=raw, headers={**editor, **JSON})


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """The app with a 2 KiB body limit."""
    settings = Settings.from_env(
        {"BROADCASTER_MAX_BODY_BYTES": "2048"}, data_dir=tmp_path / "small"
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        yield client


async def test_configured_body_limit_answers_413(small_client: TestClient) -> None:
    """A smaller configured limit is enforced: 2 KiB passes, one byte more is refused."""
    headers = bearer(await make_token(small_client, "editor"))
    incident = (await create_incident(small_client, headers))["id"]
    fits = b'{"body": "' + b"x" * (2048 - 12) + b'"}'
    assert len(fits) == 2048
    response = await small_client.post(
        f"/api/incidents/{incident}/entries", data=fits, headers={**headers, **JSON}
    )
    assert response.status == 201
    await refused(
        small_client, incident, 413, "payload_too_large",
        data=fits[:-2] + b'x"}', headers={**headers, **JSON},
    )  # fmt: skip


async def test_idempotency_key_replays_the_same_answer(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """The same Idempotency-Key and body give the same answer and only one entry."""
    headers = {**editor, "Idempotency-Key": "update-0615"}
    url = f"/api/incidents/{incident}/entries"
    first = await client.post(url, json={"body": "第二次通报"}, headers=headers)
    second = await client.post(url, json={"body": "第二次通报"}, headers=headers)
    assert first.status == second.status == 201
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    entries = (await (await client.get(url)).json())["entries"]
    assert [e["seq"] for e in entries] == [1, 2]


async def test_concurrent_replays_append_once(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """Ten concurrent posts with one Idempotency-Key append exactly one entry."""
    headers = {**editor, "Idempotency-Key": "burst"}
    url = f"/api/incidents/{incident}/entries"
    answers = await asyncio.gather(
        *(client.post(url, json={"body": "同一条"}, headers=headers) for _ in range(10))
    )
    bodies = [await a.json() for a in answers]
    assert {a.status for a in answers} == {201}
    assert len({b["seq"] for b in bodies}) == 1
    assert len((await (await client.get(url)).json())["entries"]) == 2


async def test_idempotency_key_with_another_body_answers_409(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """Reusing an Idempotency-Key for a different body answers 409 and appends nothing."""
    headers = {**editor, "Idempotency-Key": "k1"}
    url = f"/api/incidents/{incident}/entries"
    assert (await client.post(url, json={"body": "一"}, headers=headers)).status == 201
    await refused(
        client, incident, 409, "idempotency_key_reused", json={"body": "二"}, headers=headers
    )


async def test_list_entries_pages_with_after_and_limit(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """``after`` and ``limit`` page through the timeline in seq order, with the head."""
    for _ in range(4):
        await post_entry(client, editor, incident)
    page = await (await client.get(f"/api/incidents/{incident}/entries?after=2&limit=2")).json()
    assert [e["seq"] for e in page["entries"]] == [3, 4]
    assert page["head"]["seq"] == 5
    response = await client.get(f"/api/incidents/{incident}/entries?limit=0")
    assert (response.status, (await response.json())["error"]) == (400, "invalid_query")


async def test_checkpoint_signs_the_head(
    client: TestClient, editor: dict[str, str], incident: str
) -> None:
    """The checkpoint names the head and verifies with the published key."""
    entries = (await (await client.get(f"/api/incidents/{incident}/entries")).json())["entries"]
    checkpoint = await (await client.get(f"/api/incidents/{incident}/checkpoint")).json()
    keys_response = await client.get("/.well-known/broadcaster-keys.json")
    assert keys_response.headers["Access-Control-Allow-Origin"] == "*"
    keys = await keys_response.json()
    assert (checkpoint["seq"], checkpoint["hash"]) == (1, entries[0]["hash"])
    assert check_timeline(incident, entries, checkpoint, keys).ok


async def test_no_checkpoint_before_the_first_entry(
    client: TestClient, editor: dict[str, str]
) -> None:
    """An empty timeline has no checkpoint: 404 no_checkpoint with the genesis head."""
    found = await create_incident(client, editor)
    response = await client.get(f"/api/incidents/{found['id']}/checkpoint")
    body = await response.json()
    assert (response.status, body["error"]) == (404, "no_checkpoint")
    assert body["head"] == {"seq": 0, "hash": chain.genesis_hash(found["id"])}


async def test_metrics_count_entries_by_kind(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """/metrics counts every acknowledged entry by kind, and nothing for a refused one."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    await post_entry(client, editor, incident["id"], kind="correction", corrects=1)
    refused = await client.post(
        f"/api/incidents/{incident['id']}/entries", json={"kind": "correction"}, headers=editor
    )
    assert refused.status == 422
    text = await (await client.get("/metrics", headers=admin)).text()
    assert 'broadcaster_entries_total{kind="update"} 1.0' in text
    assert 'broadcaster_entries_total{kind="correction"} 1.0' in text


async def test_entries_are_paged_by_bytes_and_compressed(
    client: TestClient, editor: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: /entries answered up to 36 MB. A page now stops at PAGE_BYTES (at least one
    entry) and says "more"; paging on reads everything; large answers are compressed."""
    from broadcaster.api import entries as entries_api
    from broadcaster.log.fetch import fetch_timeline

    monkeypatch.setattr(entries_api, "PAGE_BYTES", 20_000)
    iid = (await create_incident(client, editor))["id"]
    for n in range(6):
        await post_entry(client, editor, iid, body=f"第{n}次通报" + "水" * 1500)
    response = await client.get(f"/api/incidents/{iid}/entries")
    page = await response.json()
    assert 1 <= len(page["entries"]) < 6 and page["more"] is True
    assert response.headers["Content-Encoding"] in ("gzip", "deflate")
    last = await (await client.get(f"/api/incidents/{iid}/entries?after=5")).json()
    assert [e["seq"] for e in last["entries"]] == [6] and last["more"] is False
    fetched = await fetch_timeline(str(client.make_url("")), iid)
    assert [e["seq"] for e in fetched["entries"]] == [1, 2, 3, 4, 5, 6]
