"""The audit log over HTTP: every write with who, when and from where.

Code: ``broadcaster.accountability.audit_api``.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from broadcaster.api.ops import merged_openapi
from broadcaster.clock import parse_ts
from tests.conftest import create_incident, post_entry


async def audit(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/audit{query}", headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def busy_day(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> tuple[str, str]:
    """Write one of everything: incidents, entries, an acknowledgement, a draft, a redaction."""
    incident = await create_incident(client, editor)
    other = await create_incident(client, editor, title="另一起事件", require_approval=True)
    await post_entry(client, editor, incident["id"], body="第一次通报。")
    await post_entry(
        client,
        editor,
        incident["id"],
        body="媒体垂询：xinwen@yjj.qingdao.gov.cn",
        acknowledge={"codes": ["email"], "reason": "公开邮箱"},
    )
    response = await client.post(
        f"/api/incidents/{other['id']}/entries", json={"body": "待审核"}, headers=editor
    )
    draft_id = (await response.json())["draft_id"]
    assert (await client.post(f"/api/drafts/{draft_id}/approve", headers=reviewer)).status == 201
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries/1/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "误发"},
        headers=admin,
    )
    assert response.status == 201
    return incident["id"], other["id"]


async def test_every_write_is_listed_with_who_when_and_where(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """Incidents, entries, acknowledgements, drafts and redactions each leave a full record."""
    incident_id, other_id = await busy_day(client, editor, reviewer, admin)
    records = (await audit(client, admin))["audit"]
    actions = [(r["action"], r["target"]) for r in reversed(records)]
    assert actions == [
        ("incident.create", incident_id),
        ("incident.create", other_id),
        ("entry.update", f"{incident_id}#1"),
        ("entry.update", f"{incident_id}#2"),
        ("disclosure.acknowledge", f"{incident_id}#2"),
        ("draft.create", actions[5][1]),
        ("entry.update", f"{other_id}#1"),
        ("draft.approve", actions[5][1]),
        ("entry.redaction", f"{incident_id}#3"),
        ("entry.redact", f"{incident_id}#1"),
    ]
    assert actions[5][1].startswith(f"{other_id}/drafts/")
    for record in records:
        assert record["actor"]["name"] and record["actor"]["department"] == "应急管理局"
        assert record["remote"] == "127.0.0.1"
        assert parse_ts(record["at"]).tzinfo is not None
    redact = records[0]
    assert redact["actor"] == {"name": "管理员", "department": "应急管理局", "role": "admin"}
    assert redact["detail"] == {
        "basis": "政府信息公开条例第十五条",
        "reason": "误发",
        "redaction_seq": 3,
    }
    assert redact["incident"] == incident_id
    approve = records[2]
    assert approve["actor"]["role"] == "reviewer"
    assert approve["detail"]["author"] == {"name": "值班编辑", "department": "应急管理局"}


async def test_filters_by_action_and_incident(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """Exact and prefix action filters, and the incident filter with its entries and drafts."""
    incident_id, other_id = await busy_day(client, editor, reviewer, admin)
    exact = (await audit(client, admin, "?action=entry.redact"))["audit"]
    assert [r["action"] for r in exact] == ["entry.redact"]
    drafts = (await audit(client, admin, "?action=draft.*"))["audit"]
    assert [r["action"] for r in drafts] == ["draft.approve", "draft.create"]
    other = (await audit(client, admin, f"?incident={other_id}"))["audit"]
    assert {r["incident"] for r in other} == {other_id}
    assert [r["action"] for r in other] == [
        "draft.approve",
        "entry.update",
        "draft.create",
        "incident.create",
    ]
    both = (await audit(client, admin, f"?incident={incident_id}&action=entry.*"))["audit"]
    assert len(both) == 4 and all(r["incident"] == incident_id for r in both)
    by = (await audit(client, admin, "?actor=审核员"))["audit"]
    assert {r["actor"]["name"] for r in by} == {"审核员"}


async def test_pages_follow_the_cursor_without_gaps(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """Paging with next_before returns every record once, newest first."""
    await busy_day(client, editor, reviewer, admin)
    everything = [r["id"] for r in (await audit(client, admin))["audit"]]
    seen: list[int] = []
    query = "?limit=3"
    while True:
        page = await audit(client, admin, query)
        seen.extend(r["id"] for r in page["audit"])
        if page["next_before"] is None:
            break
        query = f"?limit=3&before={page['next_before']}"
    assert seen == everything == sorted(everything, reverse=True)


async def test_only_admins_read_the_log(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Editors and reviewers get 403, anonymous callers 401."""
    assert (await client.get("/api/audit", headers=editor)).status == 403
    assert (await client.get("/api/audit", headers=reviewer)).status == 403
    assert (await client.get("/api/audit")).status == 401


@pytest.mark.parametrize("query", ["?limit=0", "?limit=x", "?before=-1", "?who=me"])
async def test_bad_queries_are_refused(
    client: TestClient, admin: dict[str, str], query: str
) -> None:
    """A bad limit, cursor or unknown parameter answers 400 invalid_query."""
    response = await client.get(f"/api/audit{query}", headers=admin)
    assert (response.status, (await response.json())["error"]) == (400, "invalid_query")


SAFEGUARD_MODULES = {
    "broadcaster.privacy.review",
    "broadcaster.privacy.redaction",
    "broadcaster.timeline.drafts",
    "broadcaster.accountability.audit_api",
}


def conforms(instance: Any, schema: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/<schema>`` of the merged document."""
    components = merged_openapi()["components"]
    wrapper = {"$ref": f"#/components/schemas/{schema}", "components": components}
    jsonschema.Draft202012Validator(wrapper).validate(instance)


def test_every_safeguard_route_is_documented(client: TestClient) -> None:
    """Each route of the safeguard modules appears, with its method, in /api/openapi.json."""
    paths = merged_openapi()["paths"]
    routes = [
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and getattr(route.handler, "__module__", "") in SAFEGUARD_MODULES
    ]
    assert len(routes) == 6
    assert [(m, p) for m, p in routes if m not in paths.get(p, {})] == []


async def test_real_answers_match_the_documented_schemas(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """An audit page, drafts (pending, approved) and a redaction match their schemas."""
    _, other_id = await busy_day(client, editor, reviewer, admin)
    conforms(await audit(client, admin), "AuditPage")
    drafts = await (await client.get("/api/drafts?status=all", headers=reviewer)).json()
    conforms(drafts, "DraftList")
    assert drafts["drafts"][0]["status"] == "approved"
    response = await client.post(
        f"/api/incidents/{other_id}/entries",
        json={"body": "邮箱 a@b.cn", "acknowledge": {"codes": ["email"], "reason": "公开"}},
        headers=editor,
    )
    conforms(await response.json(), "DraftPending")
    held = await (await client.get(response.headers["Location"], headers=reviewer)).json()
    conforms(held, "Draft")
    assert held["findings"][0]["resolution"] == "acknowledged"
