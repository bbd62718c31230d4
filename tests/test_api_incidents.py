"""The incidents API: create, list and read; every refusal names its field and writes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry

from broadcaster.log import chain


async def listing(client: TestClient) -> list[dict[str, Any]]:
    return (await (await client.get("/api/incidents")).json())["incidents"]


async def test_create_answers_201_with_the_incident(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A new incident has a server-chosen slug and code, is active and starts at genesis."""
    found = await create_incident(
        client, editor, summary="**沿河**居民转移", area="崂山区", update_interval_minutes=60
    )
    assert re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", found["id"])
    assert re.fullmatch(r"[A-Z0-9]{1,8}", found["code"])
    assert found["status"] == "active"
    assert found["head"] == {"seq": 0, "hash": chain.genesis_hash(found["id"])}
    assert found["created_by"] == {"name": "值班编辑", "department": "应急管理局"}
    assert found["next_update_due"] is not None
    assert found["started_at"] == found["created_at"]
    response = await client.get(f"/api/incidents/{found['id']}")
    assert await response.json() == found


async def test_a_free_id_and_code_are_honoured(client: TestClient, editor: dict[str, str]) -> None:
    """An ``id`` and ``code`` given in the body are used when free."""
    found = await create_incident(client, editor, id="laoshan-flood", code="ls1")
    assert (found["id"], found["code"]) == ("laoshan-flood", "LS1")


@pytest.mark.parametrize(("field", "code"), [("id", "id_taken"), ("code", "code_taken")])
async def test_a_taken_id_or_code_answers_409(
    client: TestClient, editor: dict[str, str], field: str, code: str
) -> None:
    """An id or SMS code already in use answers 409 and creates nothing."""
    await create_incident(client, editor, id="flood", code="FL")
    before = await listing(client)
    body = {"title": "另一事件", "severity": "minor", "id": "flood2", "code": "FL2"}
    body[field] = "flood" if field == "id" else "FL"
    response = await client.post("/api/incidents", json=body, headers=editor)
    answer = await response.json()
    assert (response.status, answer["error"], answer["field"]) == (409, code, field)
    assert await listing(client) == before


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"severity": "severe"}, "missing_field", "title"),
        ({"title": "洪水"}, "missing_field", "severity"),
        ({"title": "洪水", "severity": "huge"}, "invalid_value", "severity"),
        ({"title": 7, "severity": "severe"}, "invalid_type", "title"),
        ({"title": "洪水", "severity": "severe", "x": 1}, "unknown_field", "x"),
        ({"title": "  ", "severity": "severe"}, "invalid_value", "title"),
        ({"title": "洪" * 121, "severity": "severe"}, "too_long", "title"),
        ({"title": "a\x07b", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "a\nb", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "a\u202eb", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "a\u2066b", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "a\u200bb", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "a\ufeffb", "severity": "severe"}, "forbidden_char", "title"),
        ({"title": "洪水", "severity": "severe", "id": "../etc"}, "invalid_value", "id"),
        ({"title": "洪水", "severity": "severe", "code": "TOOLONG99"}, "too_long", "code"),
        ({"title": "洪水", "severity": "severe", "started_at": "today"}, "invalid_value",
         "started_at"),
        ({"title": "洪水", "severity": "severe", "update_interval_minutes": 0}, "invalid_value",
         "update_interval_minutes"),
    ],
)  # fmt: skip
async def test_bad_fields_answer_422_naming_the_field(
    client: TestClient, editor: dict[str, str], payload: dict[str, Any], code: str, field: str
) -> None:
    """Missing, unknown, mistyped or unsafe fields answer 422 naming the field; none is created."""
    response = await client.post("/api/incidents", json=payload, headers=editor)
    body = await response.json()
    assert (response.status, body["error"], body["field"]) == (422, code, field)
    assert await listing(client) == []


async def test_titles_are_nfc_normalised(client: TestClient, editor: dict[str, str]) -> None:
    """A decomposed title is stored in its composed (NFC) form."""
    found = await create_incident(client, editor, title="Cafe\u0301 closed")
    assert found["title"] == "Café closed"


async def test_list_puts_active_first_then_newest(
    client: TestClient, editor: dict[str, str]
) -> None:
    """The list shows active incidents first, each group newest first."""
    old = await create_incident(client, editor, id="old")
    resolved = await create_incident(client, editor, id="resolved")
    new = await create_incident(client, editor, id="new")
    await post_entry(client, editor, resolved["id"], kind="status", status="resolved", body="")
    await post_entry(client, editor, old["id"])
    ids = [i["id"] for i in await listing(client)]
    assert ids == [old["id"], new["id"], resolved["id"]]


async def test_the_head_follows_the_timeline(client: TestClient, editor: dict[str, str]) -> None:
    """After an append the incident's head is that entry's seq and hash."""
    found = await create_incident(client, editor)
    entry = await post_entry(client, editor, found["id"])
    again = await (await client.get(f"/api/incidents/{found['id']}")).json()
    assert again["head"] == {"seq": 1, "hash": entry["hash"]}
    assert again["last_update_at"] == entry["posted_at"]


async def test_unknown_incident_answers_404(client: TestClient) -> None:
    """Reading an unknown incident answers 404 incident_not_found."""
    response = await client.get("/api/incidents/nope")
    assert (response.status, (await response.json())["error"]) == (404, "incident_not_found")


async def test_incident_list_answers_304_until_something_changes(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Pollers of the incident list get 304 while nothing changed, and the list once it did."""
    incident = await create_incident(client, editor)
    first = await client.get("/api/incidents")
    etag = first.headers["ETag"]
    again = await client.get("/api/incidents", headers={"If-None-Match": etag})
    assert again.status == 304
    await post_entry(client, editor, incident["id"])
    changed = await client.get("/api/incidents", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await changed.json())["incidents"][0]["head"]["seq"] == 1
