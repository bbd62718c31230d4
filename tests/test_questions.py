"""Tests for public questions: asking, the review, rate limits, answers on the timeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from broadcaster.accountability import questions as questions_module
from broadcaster.accountability.questions import PER_SOURCE_PENDING, QUESTION_LIMITER, TokenBucket
from broadcaster.app import create_app
from broadcaster.settings import Settings
from tests.conftest import TIMEOUT, bearer, create_incident, make_token, post_entry

QUESTION = "沙子口街道到李村的公交什么时候恢复？"


async def ask(client: TestClient, iid: str, **body: Any) -> Any:
    return await client.post(f"/api/incidents/{iid}/questions", json={"text": QUESTION, **body})


async def asked(client: TestClient, iid: str, **body: Any) -> str:
    response = await ask(client, iid, **body)
    assert response.status == 202, await response.text()
    data = await response.json()
    assert data["status"] == "pending"
    return data["id"]


async def questions(client: TestClient, iid: str, headers: dict[str, str] | None = None) -> Any:
    response = await client.get(f"/api/incidents/{iid}/questions", headers=headers or {})
    assert response.status == 200
    return await response.json()


async def test_pending_questions_are_shown_to_editors_only(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A new question is pending: counted publicly, listed only with a token."""
    incident = await create_incident(client, editor)
    qid = await asked(client, incident["id"])
    public = await questions(client, incident["id"])
    assert public["questions"] == []
    assert public["counts"]["pending"] == 1
    staff = await questions(client, incident["id"], editor)
    assert [(q["id"], q["text"], q["status"]) for q in staff["questions"]] == [
        (qid, QUESTION, "pending")
    ]
    refused = await client.get(f"/api/incidents/{incident['id']}/questions?status=pending")
    assert refused.status == 422


async def test_answer_arrives_over_websocket_quoting_the_question(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Answering appends an answer entry quoting the question, delivered live like any entry."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid)
    qid = await asked(client, iid)
    staff = await questions(client, iid, editor)
    asked_at = staff["questions"][0]["asked_at"]
    async with client.ws_connect(f"/ws/incidents/{iid}?after=1") as ws:
        hello = await ws.receive_json(timeout=TIMEOUT)
        assert hello["type"] == "hello"
        response = await client.post(
            f"/api/incidents/{iid}/questions/{qid}/answer",
            json={"body": "公交104路已于今日18时恢复运营。"},
            headers=editor,
        )
        assert response.status == 201, await response.text()
        posted = await response.json()
        frame = await ws.receive(timeout=TIMEOUT)
        assert frame.type == WSMsgType.TEXT
    live = frame.json()
    assert live == {"type": "entry", "entry": posted}
    assert posted["kind"] == "answer" and posted["seq"] == 2
    assert posted["question"] == {"id": qid, "asked_at": asked_at}
    assert posted["body"].startswith("> ") and QUESTION in posted["html"]
    public = await questions(client, iid)
    assert [(q["id"], q["status"], q["answer_seq"]) for q in public["questions"]] == [
        (qid, "answered", 2)
    ]
    assert public["counts"]["answered"] == 1 and public["counts"]["pending"] == 0
    assert public["counts"]["median_answer_seconds"] >= 0
    metrics = await (await client.get(f"/api/incidents/{iid}/metrics")).json()
    assert metrics["questions_answered"] == 1
    assert metrics["median_answer_seconds"] == public["counts"]["median_answer_seconds"]


async def test_a_question_is_answered_once(client: TestClient, editor: dict[str, str]) -> None:
    """A second answer to the same question answers 409 and appends nothing."""
    incident = await create_incident(client, editor)
    qid = await asked(client, incident["id"])
    url = f"/api/incidents/{incident['id']}/questions/{qid}/answer"
    first, second = await asyncio.gather(
        client.post(url, json={"body": "答复一。"}, headers=editor),
        client.post(url, json={"body": "答复二。"}, headers=editor),
    )
    assert sorted([first.status, second.status]) == [201, 409]
    loser = first if first.status == 409 else second
    assert (await loser.json())["error"] == "question_not_pending"
    current = await (await client.get(f"/api/incidents/{incident['id']}")).json()
    assert current["head"]["seq"] == 1


async def test_dismissal_needs_a_reason_and_is_counted(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Dismissing needs a reason; dismissed questions are counted publicly, not listed."""
    incident = await create_incident(client, editor)
    qid = await asked(client, incident["id"])
    url = f"/api/incidents/{incident['id']}/questions/{qid}/dismiss"
    empty = await client.post(url, json={"reason": "  "}, headers=editor)
    assert (await empty.json())["error"] == "reason_required"
    anonymous = await client.post(url, json={"reason": "重复提问"})
    assert anonymous.status == 401
    done = await client.post(url, json={"reason": "与第3条问题重复"}, headers=editor)
    assert done.status == 200
    assert (await done.json())["reason"] == "与第3条问题重复"
    public = await questions(client, incident["id"])
    assert public["questions"] == [] and public["counts"]["dismissed"] == 1
    again = await client.post(url, json={"reason": "再次"}, headers=editor)
    assert again.status == 409


async def test_rate_limit_answers_429_with_retry_after(
    client: TestClient, editor: dict[str, str]
) -> None:
    """After a burst of questions from one address the next one answers 429 rate_limited.

    Within the burst, only PER_SOURCE_PENDING may wait at once; the rest are turned away.
    """
    incident = await create_incident(client, editor)
    burst = client.app[QUESTION_LIMITER].capacity
    codes = []
    for n in range(burst):
        response = await ask(client, incident["id"], text=f"{QUESTION}第{n}个问题")
        codes.append(
            response.status if response.status == 202 else (await response.json())["error"]
        )
    assert codes == [202] * PER_SOURCE_PENDING + ["too_many_pending"] * (burst - PER_SOURCE_PENDING)
    response = await ask(client, incident["id"])
    assert response.status == 429
    assert (await response.json())["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    staff = await questions(client, incident["id"], editor)
    assert len(staff["questions"]) == PER_SOURCE_PENDING
    assert staff["counts"]["turned_away"] == burst - PER_SOURCE_PENDING


async def test_personal_data_is_refused_or_masked(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A question with a phone number is refused with findings, or stored masked on request."""
    incident = await create_incident(client, editor)
    text = "我家人电话13812345678联系不上，在沙子口吗？"
    refused = await ask(client, incident["id"], text=text)
    assert refused.status == 422
    error = await refused.json()
    assert error["error"] == "disclosure_review"
    assert [(f["code"], f["excerpt"]) for f in error["findings"]] == [("mobile", "138****5678")]
    await asked(client, incident["id"], text=text, mask=True)
    staff = await questions(client, incident["id"], editor)
    assert staff["questions"][0]["text"] == "我家人电话138****5678联系不上，在沙子口吗？"


async def test_bad_questions_get_their_own_codes(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Too long, too short, unknown fields, unknown incidents and questions each get a code."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    cases = [
        ({"text": "问" * 501}, 422, "too_long"),
        ({"text": "？ "}, 422, "too_short"),
        ({"text": QUESTION, "name": "张三"}, 422, "unknown_field"),
        ({}, 422, "missing_field"),
    ]
    for body, status, code in cases:
        response = await client.post(f"/api/incidents/{iid}/questions", json=body)
        assert (response.status, (await response.json())["error"]) == (status, code), body
    missing = await client.post("/api/incidents/nope/questions", json={"text": QUESTION})
    assert missing.status == 404
    unknown = await client.post(
        f"/api/incidents/{iid}/questions/q0/answer", json={"body": "答复。"}, headers=editor
    )
    assert (unknown.status, (await unknown.json())["error"]) == (404, "question_not_found")


async def test_resolved_incident_takes_no_questions(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Asking about a resolved incident answers 409 incident_resolved."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"], kind="status", status="resolved", body="")
    response = await ask(client, incident["id"])
    assert (response.status, (await response.json())["error"]) == (409, "incident_resolved")


def test_token_bucket_refills_over_time() -> None:
    """The bucket allows a burst, then one request per period, and forgets idle clients."""
    moment = [0.0]
    bucket = TokenBucket(capacity=2, per_seconds=10, max_keys=2, clock=lambda: moment[0])
    assert [bucket.take("a"), bucket.take("a")] == [0, 0]
    assert bucket.take("a") == 10
    moment[0] = 5
    assert bucket.take("a") == 5
    moment[0] = 10
    assert bucket.take("a") == 0
    bucket.take("b")
    bucket.take("c")  # over max_keys: "a", the longest idle, is forgotten (a full bucket again)
    assert bucket.take("a") == 0 and bucket.take("a") == 0


async def test_redacting_an_answer_withdraws_the_quoted_question(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """The quoted question leaves the answer and the public list when the answer is redacted."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    marker = "王家巷七号的张阿姨联系不上"
    qid = await asked(client, iid, text=marker + "，请帮忙找找？")
    response = await client.post(
        f"/api/incidents/{iid}/questions/{qid}/answer",
        json={"body": "已转交社区网格员。"},
        headers=editor,
    )
    assert response.status == 201, await response.text()
    seq = (await response.json())["seq"]
    redacted = await client.post(
        f"/api/incidents/{iid}/entries/{seq}/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "涉及个人信息"},
        headers=admin,
    )
    assert redacted.status == 201, await redacted.text()
    entry = await (await client.get(f"/api/incidents/{iid}/entries/{seq}")).text()
    public = await (await client.get(f"/api/incidents/{iid}/questions")).text()
    assert marker not in entry
    assert marker not in public


async def test_answers_wait_for_a_second_person_under_two_person_review(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Under two-person review an answer is a draft until a reviewer approves it."""
    incident = await create_incident(client, editor, require_approval=True)
    iid = incident["id"]
    qid = await asked(client, iid)
    response = await client.post(
        f"/api/incidents/{iid}/questions/{qid}/answer",
        json={"body": "公交104路已于今日18时恢复运营。"},
        headers=editor,
    )
    assert response.status == 202, await response.text()
    draft = await response.json()
    assert (await questions(client, iid, editor))["questions"][0]["status"] == "pending"
    approved = await client.post(f"/api/drafts/{draft['draft_id']}/approve", headers=reviewer)
    assert approved.status == 201, await approved.text()
    entry = await approved.json()
    assert entry["kind"] == "answer" and entry["approved_by"]["name"] == "审核员"
    [answered] = (await questions(client, iid))["questions"]
    assert (answered["id"], answered["status"], answered["answer_seq"]) == (qid, "answered", 1)


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[TestClient]:
    """The app trusting 127.0.0.1 as its proxy, so a test can speak for many clients."""
    app = create_app(settings.with_(trusted_proxies=("127.0.0.1/32",)))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


async def ask_as(client: TestClient, iid: str, address: str, text: str) -> tuple[int, Any]:
    response = await client.post(
        f"/api/incidents/{iid}/questions",
        json={"text": text},
        headers={"X-Forwarded-For": address},
    )
    return response.status, await response.json()


async def test_a_flood_from_many_addresses_does_not_shut_out_a_new_resident(
    behind_proxy: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: many addresses fill the queue past its limit; a resident who has asked
    nothing yet is still queued, and every question set aside is counted publicly."""
    monkeypatch.setattr(questions_module, "MAX_PENDING", 40)
    editor = bearer(await make_token(behind_proxy, "editor"))
    iid = (await create_incident(behind_proxy, editor))["id"]
    outcomes = []
    for n in range(30):
        for k in range(4):
            status, body = await ask_as(
                behind_proxy, iid, f"198.51.100.{n}", f"灌水第{n}号第{k}条：请问什么时候通车"
            )
            outcomes.append(status if status == 202 else body["error"])
    assert outcomes.count(202) >= 30, "every flooding address got its first question in"
    assert "too_many_pending" in outcomes
    status, body = await ask_as(behind_proxy, iid, "203.0.113.1", "我家在沙子口，现在能回去吗？")
    assert status == 202, body
    counts = (await questions(behind_proxy, iid))["counts"]
    assert counts["pending"] == outcomes.count(202) + 1
    assert counts["turned_away"] == outcomes.count("too_many_pending")


async def test_near_duplicate_questions_are_folded(behind_proxy: TestClient) -> None:
    """The same question with other punctuation, width or case joins the pending one."""
    editor = bearer(await make_token(behind_proxy, "editor"))
    iid = (await create_incident(behind_proxy, editor))["id"]
    status, first = await ask_as(
        behind_proxy, iid, "198.51.100.1", "沙子口的公交什么时候恢复？Bus 5"
    )
    assert status == 202
    status, again = await ask_as(
        behind_proxy, iid, "198.51.100.2", "沙子口的公交，什么时候恢复?? ｂｕｓ ５"
    )
    assert status == 202
    assert again == {"id": first["id"], "status": "pending", "folded": True}
    staff = await questions(behind_proxy, iid, editor)
    assert [(q["id"], q["asks"]) for q in staff["questions"]] == [(first["id"], 2)]
    assert staff["counts"]["folded"] == 1 and staff["counts"]["pending"] == 1


async def test_editors_dismiss_questions_in_bulk(behind_proxy: TestClient) -> None:
    """Pending questions containing a phrase, or listed by id, are dismissed in one call."""
    editor = bearer(await make_token(behind_proxy, "editor"))
    iid = (await create_incident(behind_proxy, editor))["id"]
    texts = ["低价卖水加微信abc", "加微信 领救灾物资", "李村小学还开放吗？", "沙子口有没有停电？"]
    ids = [
        (await ask_as(behind_proxy, iid, f"198.51.100.{n}", t))[1]["id"]
        for n, t in enumerate(texts)
    ]
    url = f"/api/incidents/{iid}/questions/dismiss"
    assert (
        await behind_proxy.post(url, json={"reason": "广告", "matching": "加微信"})
    ).status == 401
    for bad in ({"reason": "广告"}, {"reason": "广告", "ids": [], "matching": "加微信"}):
        response = await behind_proxy.post(url, json=bad, headers=editor)
        assert response.status == 422, bad
    response = await behind_proxy.post(
        url, json={"reason": "广告", "matching": "加微信"}, headers=editor
    )
    assert response.status == 200
    assert await response.json() == {"dismissed": 2, "ids": ids[:2]}
    response = await behind_proxy.post(
        url, json={"reason": "重复", "ids": ids[2:3]}, headers=editor
    )
    assert (await response.json())["dismissed"] == 1
    counts = (await questions(behind_proxy, iid))["counts"]
    assert (counts["dismissed"], counts["pending"]) == (3, 1)
    admin = bearer(await make_token(behind_proxy, "admin"))
    audit = await behind_proxy.get("/api/audit?action=question.dismiss_bulk", headers=admin)
    records = (await audit.json())["audit"]
    assert [r["detail"]["count"] for r in records] == [1, 2]
