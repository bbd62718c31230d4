"""Two-person review: entries held as drafts until someone else approves them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broadcaster.app import create_app
from broadcaster.log import chain
from broadcaster.log.fetch import fetch_timeline
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.settings import Settings
from tests.conftest import bearer, create_incident, make_token

PHONE = "13812345678"
MAILBOX = "xinwen@yjj.qingdao.gov.cn"


async def submit(
    client: TestClient, headers: dict[str, str], incident_id: str, **fields: Any
) -> dict[str, Any]:
    """Post an entry that must be held; return the 202 answer."""
    body = {"body": "水位持续上涨，请沿河居民立即转移。", **fields}
    response = await client.post(
        f"/api/incidents/{incident_id}/entries", json=body, headers=headers
    )
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer["status"] == "pending"
    assert response.headers["Location"] == f"/api/drafts/{answer['draft_id']}"
    return answer


async def head_seq(client: TestClient, incident_id: str) -> int:
    return (await (await client.get(f"/api/incidents/{incident_id}")).json())["head"]["seq"]


async def draft(client: TestClient, headers: dict[str, str], draft_id: str) -> Any:
    return await client.get(f"/api/drafts/{draft_id}", headers=headers)


async def approve(client: TestClient, headers: dict[str, str], draft_id: str) -> Any:
    return await client.post(f"/api/drafts/{draft_id}/approve", headers=headers)


async def reject(client: TestClient, headers: dict[str, str], draft_id: str, reason: str) -> Any:
    return await client.post(
        f"/api/drafts/{draft_id}/reject", json={"reason": reason}, headers=headers
    )


async def guarded(client: TestClient, editor: dict[str, str]) -> str:
    """Create an incident that requires approval; return its id."""
    return (await create_incident(client, editor, require_approval=True))["id"]


async def test_entries_of_a_guarded_incident_are_held(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """A post to an incident requiring approval answers 202 and appends nothing."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id)
    assert await head_seq(client, incident_id) == 0
    listed = await (await client.get("/api/drafts", headers=reviewer)).json()
    assert [d["id"] for d in listed["drafts"]] == [answer["draft_id"]]
    held = listed["drafts"][0]
    assert held["author"] == {"name": "值班编辑", "department": "应急管理局"}
    assert held["entry"]["body"] == "水位持续上涨，请沿河居民立即转移。"
    assert "<p>" in held["entry"]["html"]


async def test_other_incidents_publish_in_one_step(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Without the setting or the incident flag, a post is published at once (201)."""
    incident = await create_incident(client, editor)
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries", json={"body": "通报"}, headers=editor
    )
    assert response.status == 201


@pytest.fixture
async def guarded_client(settings: Settings) -> AsyncIterator[TestClient]:
    """The app with BROADCASTER_REQUIRE_APPROVAL on."""
    app = create_app(settings.with_(require_approval=True))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


async def test_the_setting_holds_every_entry_whoever_posts(guarded_client: TestClient) -> None:
    """With the setting on, even an admin's incident and update are held; a redaction is not."""
    client = guarded_client
    admin = bearer(await make_token(client, "admin", "局长"))
    reviewer = bearer(await make_token(client, "reviewer", "审核员"))
    body = {"title": "崂山区沙子口街道山洪", "severity": "severe"}
    held = await client.post("/api/incidents", json=body, headers=admin)
    assert held.status == 202
    created = await approve(client, reviewer, (await held.json())["draft_id"])
    assert created.status == 201
    incident = await created.json()
    answer = await submit(client, admin, incident["id"])
    assert (await approve(client, reviewer, answer["draft_id"])).status == 201
    redaction = await client.post(
        f"/api/incidents/{incident['id']}/entries/1/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "误发"},
        headers=admin,
    )
    assert redaction.status == 201


async def test_self_approval_is_refused(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Nobody approves their own draft: not with the same token, nor with a second one."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, reviewer, incident_id)
    response = await approve(client, reviewer, answer["draft_id"])
    assert (response.status, (await response.json())["error"]) == (403, "self_approval")
    second_token = bearer(await make_token(client, "admin", "审核员"))
    assert (await approve(client, second_token, answer["draft_id"])).status == 403
    assert await head_seq(client, incident_id) == 0
    assert (await (await draft(client, reviewer, answer["draft_id"])).json())["status"] == "pending"


async def test_editors_cannot_approve_or_reject(client: TestClient, editor: dict[str, str]) -> None:
    """Approving and rejecting need the reviewer role (403 for an editor)."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id)
    other = bearer(await make_token(client, "editor", "另一位编辑"))
    assert (await approve(client, other, answer["draft_id"])).status == 403
    assert (await reject(client, other, answer["draft_id"], "不行")).status == 403


async def test_approval_publishes_with_approved_by_in_the_chain(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Approval appends the entry by its author with approved_by, covered by the hash."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id, sms=False)
    response = await approve(client, reviewer, answer["draft_id"])
    assert response.status == 201
    entry = await response.json()
    assert entry["author"] == {"name": "值班编辑", "department": "应急管理局"}
    assert entry["approved_by"] == {"name": "审核员", "department": "应急管理局"}
    assert entry["body"] == "水位持续上涨，请沿河居民立即转移。"
    record = chain.record_of(entry)
    assert chain.entry_hash(record) == entry["hash"]
    forged = {**record, "approved_by": {"name": "别人", "department": "应急管理局"}}
    assert chain.entry_hash(forged) != entry["hash"]
    data = await fetch_timeline(str(client.make_url("")), incident_id)
    report = check_timeline(incident_id, data["entries"], data["checkpoint"], data["keys"])
    assert report.ok, report.problems
    fate = await (await draft(client, editor, answer["draft_id"])).json()
    assert fate["status"] == "approved"
    assert fate["decided_by"] == {"name": "审核员", "department": "应急管理局"}
    assert fate["published"]["seq"] == entry["seq"] == 1


async def test_rejection_publishes_nothing_and_the_author_sees_why(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """A rejected draft is returned with the reason; nothing is appended; it cannot be approved."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id)
    response = await reject(client, reviewer, answer["draft_id"], "伤亡数字未经核实")
    assert response.status == 200
    assert (await response.json())["status"] == "rejected"
    assert await head_seq(client, incident_id) == 0
    fate = await (await draft(client, editor, answer["draft_id"])).json()
    assert (fate["status"], fate["reason"]) == ("rejected", "伤亡数字未经核实")
    assert fate["published"] is None
    mine = await client.get("/api/drafts?status=rejected", headers=editor)
    assert [d["id"] for d in (await mine.json())["drafts"]] == [answer["draft_id"]]
    again = await approve(client, reviewer, answer["draft_id"])
    assert (again.status, (await again.json())["error"]) == (409, "draft_not_pending")
    twice = await reject(client, reviewer, answer["draft_id"], "再次")
    assert twice.status == 409
    audit = await (await client.get("/api/audit?action=draft.reject", headers=admin)).json()
    [record] = audit["audit"]
    assert record["actor"]["name"] == "审核员"
    assert record["detail"] == {"reason": "伤亡数字未经核实"}


@pytest.mark.parametrize(
    ("body", "code"),
    [({"reason": " "}, "reason_required"), ({}, "missing_field"), ({"why": "x"}, "unknown_field")],
    ids=["blank", "missing", "unknown"],
)
async def test_rejection_needs_a_reason(
    client: TestClient,
    editor: dict[str, str],
    reviewer: dict[str, str],
    body: dict[str, str],
    code: str,
) -> None:
    """Returning a draft without a reason answers 422 and leaves it pending."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id)
    response = await client.post(
        f"/api/drafts/{answer['draft_id']}/reject", json=body, headers=reviewer
    )
    assert (response.status, (await response.json())["error"]) == (422, code)
    assert (await (await draft(client, editor, answer["draft_id"])).json())["status"] == "pending"


async def test_editors_see_only_their_own_drafts(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Another editor's draft is neither listed nor readable (404); reviewers see both."""
    incident_id = await guarded(client, editor)
    mine = await submit(client, editor, incident_id, body="我的草稿")
    other = bearer(await make_token(client, "editor", "另一位编辑"))
    theirs = await submit(client, other, incident_id, body="别人的草稿")
    listed = await (await client.get("/api/drafts", headers=editor)).json()
    assert [d["id"] for d in listed["drafts"]] == [mine["draft_id"]]
    assert (await draft(client, editor, theirs["draft_id"])).status == 404
    assert listed["viewer"] == {"name": "值班编辑", "department": "应急管理局", "role": "editor"}
    assert listed["drafts"][0]["mine"] is True
    queue = await (await client.get("/api/drafts", headers=reviewer)).json()
    assert [d["id"] for d in queue["drafts"]] == [mine["draft_id"], theirs["draft_id"]]
    assert [d["mine"] for d in queue["drafts"]] == [False, False]
    assert (await client.get("/api/drafts")).status == 401


async def test_drafts_carry_the_privacy_review(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """Findings are refused before a draft exists; masked and acknowledged ones travel with it."""
    incident_id = await guarded(client, editor)
    url = f"/api/incidents/{incident_id}/entries"
    refused = await client.post(url, json={"body": f"电话{PHONE}"}, headers=editor)
    assert (refused.status, (await refused.json())["error"]) == (422, "disclosure_review")
    answer = await submit(
        client,
        editor,
        incident_id,
        body=f"居民（{PHONE}）已获救。垂询：{MAILBOX}",
        mask=True,
        acknowledge={"codes": ["email"], "reason": "本局公开邮箱"},
    )
    held = await (await draft(client, reviewer, answer["draft_id"])).json()
    assert held["entry"]["body"] == f"居民（138****5678）已获救。垂询：{MAILBOX}"
    assert [(f["code"], f["resolution"]) for f in held["findings"]] == [
        ("mobile", "masked"),
        ("email", "acknowledged"),
    ]
    assert held["acknowledgement"] == {"codes": ["email"], "reason": "本局公开邮箱"}
    audit = await (await client.get("/api/audit?action=disclosure.*", headers=admin)).json()
    targets = {(r["action"], r["target"]) for r in audit["audit"]}
    assert ("disclosure.acknowledge", f"{incident_id}/drafts/{answer['draft_id']}") in targets
    entry = await (await approve(client, reviewer, answer["draft_id"])).json()
    assert entry["body"] == held["entry"]["body"]


async def test_two_approvals_publish_once(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """Two reviewers approving at once get one 201 and one 409, and one entry exists."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id)
    first, second = await asyncio.gather(
        approve(client, reviewer, answer["draft_id"]), approve(client, admin, answer["draft_id"])
    )
    assert sorted([first.status, second.status]) == [201, 409]
    assert await head_seq(client, incident_id) == 1


async def test_kind_rules_are_checked_when_held(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """A correction naming no entry is refused at once (422), and no draft is stored."""
    incident_id = await guarded(client, editor)
    response = await client.post(
        f"/api/incidents/{incident_id}/entries",
        json={"kind": "correction", "corrects": 5, "body": "更正"},
        headers=editor,
    )
    assert (response.status, (await response.json())["error"]) == (422, "corrects_unknown")
    queue = await (await client.get("/api/drafts?status=all", headers=reviewer)).json()
    assert queue["drafts"] == []


async def test_a_replayed_post_holds_one_draft(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """The same Idempotency-Key answers the same 202 and stores no second draft."""
    incident_id = await guarded(client, editor)
    url = f"/api/incidents/{incident_id}/entries"
    headers = {**editor, "Idempotency-Key": "draft-1"}
    first = await client.post(url, json={"body": "通报"}, headers=headers)
    again = await client.post(url, json={"body": "通报"}, headers=headers)
    assert (first.status, again.status) == (202, 202)
    assert await first.json() == await again.json()
    queue = await (await client.get("/api/drafts", headers=reviewer)).json()
    assert len(queue["drafts"]) == 1


async def test_unknown_drafts_and_bad_queries(client: TestClient, reviewer: dict[str, str]) -> None:
    """Unknown drafts are 404 everywhere; a bad status filter is 400; approve takes no fields."""
    assert (await draft(client, reviewer, "nope")).status == 404
    assert (await approve(client, reviewer, "nope")).status == 404
    assert (await reject(client, reviewer, "nope", "x")).status == 404
    bad = await client.get("/api/drafts?status=done", headers=reviewer)
    assert (bad.status, (await bad.json())["error"]) == (400, "invalid_query")
    extra = await client.post("/api/drafts/nope/approve", json={"note": "x"}, headers=reviewer)
    assert (extra.status, (await extra.json())["error"]) == (422, "unknown_field")


async def test_redacting_an_approved_entry_erases_the_draft_copy(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str], admin: dict[str, str]
) -> None:
    """The draft kept the text; a redaction of the published entry erases it there too."""
    incident_id = await guarded(client, editor)
    answer = await submit(client, editor, incident_id, body="目击者称车主为王某某。")
    assert (await approve(client, reviewer, answer["draft_id"])).status == 201
    response = await client.post(
        f"/api/incidents/{incident_id}/entries/1/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "涉及个人隐私"},
        headers=admin,
    )
    assert response.status == 201
    held = await (await draft(client, reviewer, answer["draft_id"])).json()
    assert (held["entry"]["body"], held["redacted"]) == ("", True)
    assert "王某某" not in str(held)
