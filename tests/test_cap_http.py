"""Tests for the CAP 1.2 endpoints: schema-valid alerts that follow the timeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from aiohttp.test_utils import TestClient
from lxml import etree

from channels.cap.render import CAP_NS
from tests.conftest import create_incident, post_entry

SCHEMA = Path(__file__).parent / "schemas" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS}
MARKER = "WITHHELD-c4p 李某某 13800138000"


@pytest.fixture(scope="module")
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA))


async def alert(client: TestClient, path: str, schema: xmlschema.XMLSchema) -> etree._Element:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/cap+xml"
    body = await response.read()
    schema.validate(body)
    return etree.fromstring(body)


def text(root: etree._Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NS)


async def test_alert_then_update_then_cancel(
    client: TestClient, editor: dict[str, str], cap_schema: xmlschema.XMLSchema
) -> None:
    """The first entry is an Alert, later ones Updates referencing it, resolving Cancels."""
    incident = await create_incident(client, editor, area="青岛市崂山区沙子口街道")
    iid = incident["id"]
    first = await post_entry(client, editor, iid)
    root = await alert(client, f"/incidents/{iid}/cap.xml", cap_schema)
    assert text(root, "cap:msgType") == "Alert"
    assert text(root, "cap:sender") == "example.test"
    assert text(root, "cap:status") == "Actual"
    assert text(root, "cap:identifier") == f"example.test.{iid}.1"
    assert text(root, "cap:info/cap:severity") == "Severe"
    assert text(root, "cap:info/cap:web") == f"http://example.test/incidents/{iid}/entries/1"
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "青岛市崂山区沙子口街道"
    assert first["body"] in (text(root, "cap:info/cap:description") or "")

    await post_entry(client, editor, iid, figures={"injured": 12, "evacuated": 3400})
    root = await alert(client, f"/incidents/{iid}/cap.xml", cap_schema)
    assert text(root, "cap:msgType") == "Update"
    references = text(root, "cap:references") or ""
    assert references.startswith(f"example.test,example.test.{iid}.1,")
    parameters = {
        p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
        for p in root.iterfind("cap:info/cap:parameter", NS)
    }
    assert parameters == {"evacuated": "3400", "injured": "12"}

    await post_entry(client, editor, iid, kind="status", status="resolved", body="险情解除。")
    root = await alert(client, f"/incidents/{iid}/cap.xml", cap_schema)
    assert text(root, "cap:msgType") == "Cancel"
    assert f"example.test.{iid}.2" in (text(root, "cap:references") or "")
    # Each entry keeps its own alert.
    root = await alert(client, f"/incidents/{iid}/entries/1/cap.xml", cap_schema)
    assert text(root, "cap:msgType") == "Alert"


async def test_etag_answers_304(client: TestClient, editor: dict[str, str]) -> None:
    """A client holding the current alert gets 304; a new entry changes the tag."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    path = f"/incidents/{incident['id']}/cap.xml"
    etag = (await client.get(path)).headers["ETag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    await post_entry(client, editor, incident["id"])
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_redacted_entry_alert_carries_no_text(
    client: TestClient,
    editor: dict[str, str],
    admin: dict[str, str],
    cap_schema: xmlschema.XMLSchema,
) -> None:
    """After a redaction the entry's alert has the notice, not the text or its figures."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid)
    await post_entry(
        client, editor, iid, body=MARKER, figures={"missing": 1},
        acknowledge={"codes": ["mobile"], "reason": "测试"},
    )  # fmt: skip
    path = f"/incidents/{iid}/entries/2/cap.xml"
    before = await client.get(path)
    assert "WITHHELD-c4p" in await before.text()
    response = await client.post(
        f"/api/incidents/{iid}/entries/2/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "涉及个人信息"},
        headers=admin,
    )
    assert response.status == 201, await response.text()
    after = await client.get(path, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status == 200
    body = await after.text()
    assert "WITHHELD" not in body and "李某某" not in body and "13800138000" not in body
    root = etree.fromstring(body.encode("utf-8"))
    assert root.find("cap:info/cap:parameter", NS) is None
    assert "政府信息公开条例第十五条" in (text(root, "cap:info/cap:description") or "")
    cap_schema.validate(body)


async def test_missing_alerts_are_404(client: TestClient, editor: dict[str, str]) -> None:
    """No entry yet, an unknown entry and an unknown incident each answer 404."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    empty = await client.get(f"/incidents/{iid}/cap.xml")
    assert (empty.status, (await empty.json())["error"]) == (404, "no_alert")
    await post_entry(client, editor, iid)
    for path in (f"/incidents/{iid}/entries/2/cap.xml", f"/incidents/{iid}/entries/0/cap.xml",
                 f"/incidents/{iid}/entries/x/cap.xml"):  # fmt: skip
        response = await client.get(path)
        assert (response.status, (await response.json())["error"]) == (404, "entry_not_found")
    assert (await client.get("/incidents/nope/cap.xml")).status == 404
