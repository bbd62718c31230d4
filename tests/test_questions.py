"""Tests for public questions: asking, the review, rate limits, answers on the timeline."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from broadcaster.questions import PER_SOURCE_PENDING, QUESTION_LIMITER, TokenBucket
from tests.conftest import TIMEOUT, create_incident, post_entry

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
