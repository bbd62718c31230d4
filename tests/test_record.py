"""The incident on the record: state changes, reviewed incident text, corrections that travel.

Each test here guards one problem found when residents, press officers and
journalists tried the service (issue #13), so that it cannot come back
unnoticed. SMS and pages have their own files (``test_record_sms.py``,
``test_record_pages.py``); both backends run every test.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry

from broadcaster.app import create_app
from broadcaster.log import chain
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.settings import Settings

AMMONIA = {
    "title": "李沧区化工厂氨气泄漏",
    "severity": "severe",
    "area": "李沧区虎山路街道",
    "advice": "现在应做：关闭门窗，留在室内。",
    "summary": "化工厂储罐阀门泄漏，下风向 2 公里内居民请关闭门窗。",
}


async def status(
    client: TestClient, headers: dict[str, str], incident_id: str, **fields: Any
) -> Any:
    body = {"kind": "status", "body": "", **fields}
    return await client.post(f"/api/incidents/{incident_id}/entries", json=body, headers=headers)


async def incident_of(client: TestClient, incident_id: str) -> dict[str, Any]:
    return await (await client.get(f"/api/incidents/{incident_id}")).json()


async def test_severity_has_no_default(client: TestClient, editor: dict[str, str]) -> None:
    """A hurried editor must choose a level: creating without one answers 422 naming it."""
    for body in ({"title": "山洪"}, {"title": "山洪", "severity": None}):
        response = await client.post("/api/incidents", json=body, headers=editor)
        answer = await response.json()
        assert (response.status, answer["field"]) == (422, "severity"), answer
    assert (await (await client.get("/api/incidents")).json())["incidents"] == []


async def test_advice_is_part_of_the_incident(client: TestClient, editor: dict[str, str]) -> None:
    """The "what to do now" line is given at creation and served with the incident."""
    incident = await create_incident(client, editor, **AMMONIA)
    assert incident["advice"] == AMMONIA["advice"]
    served = await incident_of(client, incident["id"])
    assert served["advice"] == AMMONIA["advice"]
    # What it said at creation is on the record (the site log's seq-0 entry commits to it).
    assert served["creation"]["record"]["advice"] == AMMONIA["advice"]
    bidi = await client.post(
        "/api/incidents", json={**AMMONIA, "advice": "现在\u202e应做"}, headers=editor
    )
    assert (bidi.status, (await bidi.json())["error"]) == (422, "forbidden_char")


async def test_a_status_entry_changes_the_incident_on_the_record(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Level, advice, summary and area change through chained status entries, at once."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    await post_entry(client, editor, iid, body="储罐阀门已关闭。")
    raised = await status(
        client, editor, iid, severity="extreme", advice="现在应做：立即向上风向撤离。"
    )
    assert raised.status == 201, await raised.text()
    entry = await raised.json()
    assert (entry["severity"], entry["advice"], entry["status"]) == (
        "extreme",
        "现在应做：立即向上风向撤离。",
        None,
    )
    assert (entry["summary"], entry["area"], entry["pinned"]) == (None, None, None)
    assert entry["sms"] is True  # an escalation reaches subscribers unless the editor says not
    now = await incident_of(client, iid)
    assert (now["severity"], now["advice"], now["summary"]) == (
        "extreme",
        "现在应做：立即向上风向撤离。",
        AMMONIA["summary"],
    )
    resolved = await status(client, editor, iid, status="resolved", advice="", severity="minor")
    assert resolved.status == 201
    now = await incident_of(client, iid)
    assert (now["status"], now["severity"], now["advice"]) == ("resolved", "minor", "")
    created = now["creation"]["record"]
    assert (created["severity"], created["advice"]) == ("severe", AMMONIA["advice"])
    record = chain.record_of(await resolved.json())
    assert chain.entry_hash(record) == (await resolved.json())["hash"]
    entries = (await (await client.get(f"/api/incidents/{iid}/entries")).json())["entries"]
    checkpoint = await (await client.get(f"/api/incidents/{iid}/checkpoint")).json()
    keys = await (await client.get("/.well-known/broadcaster-keys.json")).json()
    assert check_timeline(iid, entries, checkpoint, keys).ok


async def test_status_entries_refuse_nonsense(client: TestClient, editor: dict[str, str]) -> None:
    """No change answers 409; state fields on another kind, or an unknown pin, answer 422."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    await post_entry(client, editor, iid)
    same = await status(client, editor, iid, severity="severe", advice=AMMONIA["advice"])
    assert (same.status, (await same.json())["error"]) == (409, "status_unchanged")
    nothing = await status(client, editor, iid)
    assert (nothing.status, (await nothing.json())["error"]) == (422, "status_required")
    on_update = await client.post(
        f"/api/incidents/{iid}/entries", json={"body": "x", "severity": "extreme"}, headers=editor
    )
    assert (on_update.status, (await on_update.json())["field"]) == (422, "severity")
    for pinned in ([7], [1, 1], [0], ["1"]):
        bad = await status(client, editor, iid, pinned=pinned)
        assert (bad.status, (await bad.json())["field"]) == (422, "pinned"), pinned
    assert (await incident_of(client, iid))["head"]["seq"] == 1


async def test_pinned_key_events_are_chained(client: TestClient, editor: dict[str, str]) -> None:
    """Editors pin key events with a status entry; the incident serves the list in their order."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    for n in range(3):
        await post_entry(client, editor, iid, body=f"第{n + 1}次通报")
    pinned = await status(client, editor, iid, pinned=[3, 1])
    assert (pinned.status, (await pinned.json())["pinned"]) == (201, [3, 1])
    assert (await incident_of(client, iid))["pinned"] == [3, 1]
    assert (await (await status(client, editor, iid, pinned=[])).json())["pinned"] == []


async def test_incident_text_passes_the_privacy_review(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Advice and summary set by a status entry are reviewed like the body (or masked)."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    await post_entry(client, editor, iid)
    found = await status(client, editor, iid, advice="现在应做：联系 13812345678 转移。")
    answer = await found.json()
    assert (found.status, answer["error"], answer["field"]) == (422, "disclosure_review", "advice")
    masked = await status(
        client, editor, iid, advice="现在应做：联系 13812345678 转移。", mask=True
    )
    assert (await masked.json())["advice"] == "现在应做：联系 138****5678 转移。"


async def test_corrected_by_is_in_the_api(client: TestClient, editor: dict[str, str]) -> None:
    """A corrected entry names its corrections, in the list, alone and on the live feed of JSON."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    first = await post_entry(client, editor, iid, body="3 人死亡。", figures={"deaths": 3})
    assert first["corrected_by"] == []
    await post_entry(client, editor, iid, kind="correction", corrects=1, body="更正：2 人死亡。",
                     figures={"deaths": 2})  # fmt: skip
    await post_entry(client, editor, iid, kind="correction", corrects=1, body="再次核实：2 人。")
    listed = (await (await client.get(f"/api/incidents/{iid}/entries")).json())["entries"]
    assert [e["corrected_by"] for e in listed] == [[2, 3], [], []]
    one = await (await client.get(f"/api/incidents/{iid}/entries/1")).json()
    assert one["corrected_by"] == [2, 3]
    later = await (await client.get(f"/api/incidents/{iid}/entries?after=1")).json()
    assert [e["corrected_by"] for e in later["entries"]] == [[], []]


@pytest.fixture
async def guarded(settings: Settings) -> Any:
    """The app with BROADCASTER_REQUIRE_APPROVAL=1."""
    app = create_app(settings.with_(require_approval=True))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


async def test_two_person_review_covers_incidents(guarded: TestClient) -> None:
    """With approval required, a new incident is a draft nobody sees until another approves it."""
    client = guarded
    editor = bearer(await make_token(client, "editor", "值班编辑"))
    reviewer = bearer(await make_token(client, "reviewer", "审核员"))
    body = {**AMMONIA, "severity": "extreme", "summary": "详见 [链接](https://example.com/x)"}
    held = await client.post("/api/incidents", json=body, headers=editor)
    draft = await held.json()
    assert held.status == 202 and draft["status"] == "pending" and draft["draft_id"]
    iid = draft["incident"]
    assert (await (await client.get("/api/incidents")).json())["incidents"] == []
    assert (await client.get(f"/api/incidents/{iid}")).status == 404
    page = await client.get("/", headers={"Accept": "text/html"})
    assert AMMONIA["title"] not in await page.text()  # no site-wide banner from a draft
    queue = await (await client.get("/api/drafts", headers=reviewer)).json()
    shown = queue["drafts"][0]["entry"]
    assert (shown["kind"], shown["title"], shown["severity"]) == (
        "incident",
        body["title"],
        "extreme",
    )
    own = await client.post(f"/api/drafts/{draft['draft_id']}/approve", headers=editor)
    assert own.status == 403
    approved = await client.post(f"/api/drafts/{draft['draft_id']}/approve", headers=reviewer)
    created = await approved.json()
    assert approved.status == 201, created
    assert (created["id"], created["created_by"]["name"]) == (iid, "值班编辑")
    assert created["approved_by"]["name"] == "审核员"
    served = await incident_of(client, iid)
    assert served["severity"] == "extreme"
    assert served["creation"]["record"]["created_by"]["name"] == "值班编辑"
    again = await client.post(f"/api/drafts/{draft['draft_id']}/approve", headers=reviewer)
    assert again.status == 409


async def test_two_person_review_covers_state_changes(guarded: TestClient) -> None:
    """A level change is a draft too: the incident keeps its level until it is approved."""
    client = guarded
    editor = bearer(await make_token(client, "editor", "值班编辑"))
    reviewer = bearer(await make_token(client, "reviewer", "审核员"))
    held = await (await client.post("/api/incidents", json=AMMONIA, headers=editor)).json()
    await client.post(f"/api/drafts/{held['draft_id']}/approve", headers=reviewer)
    iid = held["incident"]
    change = await status(client, editor, iid, severity="extreme", sms=False)
    assert change.status == 202
    assert (await incident_of(client, iid))["severity"] == "severe"
    approved = await client.post(
        f"/api/drafts/{(await change.json())['draft_id']}/approve", headers=reviewer
    )
    assert approved.status == 201
    entry = await approved.json()
    assert (entry["severity"], entry["approved_by"]["name"]) == ("extreme", "审核员")
    assert (await incident_of(client, iid))["severity"] == "extreme"


async def test_cap_carries_the_state_of_each_entry(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Each entry's CAP alert has the level and advice in force then; the change is an Update."""
    incident = await create_incident(client, editor, **AMMONIA)
    iid = incident["id"]
    await post_entry(client, editor, iid, body="储罐泄漏。")
    await status(client, editor, iid, severity="extreme", advice="现在应做：立即撤离。", sms=False)
    first = await (await client.get(f"/incidents/{iid}/entries/1/cap.xml")).text()
    second = await (await client.get(f"/incidents/{iid}/entries/2/cap.xml")).text()
    assert "<severity>Severe</severity>" in first
    assert "<instruction>现在应做：关闭门窗，留在室内。</instruction>" in first
    assert "<severity>Extreme</severity>" in second and "<msgType>Update</msgType>" in second
    assert "<references>" in second and "预警级别调整为一级 · 红色预警" in second
    assert "<instruction>现在应做：立即撤离。</instruction>" in second
    await status(client, editor, iid, status="resolved")
    third = await (await client.get(f"/incidents/{iid}/cap.xml")).text()
    assert "<msgType>Cancel</msgType>" in third and "<instruction>" not in third
