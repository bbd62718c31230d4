"""The pre-publication privacy review through the API: refuse, mask, acknowledge."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from broadcaster.errors import Unprocessable
from broadcaster.privacy.review import review_text
from tests.conftest import create_incident, post_entry

PHONE = "13812345678"
MAILBOX = "xinwen@yjj.qingdao.gov.cn"


async def post(
    client: TestClient, headers: dict[str, str], incident_id: str, **body: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        f"/api/incidents/{incident_id}/entries", json=body, headers=headers
    )
    return response.status, await response.json()


async def head_seq(client: TestClient, incident_id: str) -> int:
    return (await (await client.get(f"/api/incidents/{incident_id}")).json())["head"]["seq"]


async def audit(client: TestClient, admin: dict[str, str], action: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/audit?action={action}", headers=admin)
    assert response.status == 200
    return (await response.json())["audit"]


async def test_personal_data_is_refused_with_masked_findings(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A body with a mobile number answers 422 with its code, offsets and a masked excerpt."""
    incident = await create_incident(client, editor)
    body = f"请联系现场负责人张先生，电话{PHONE}。"
    status, error = await post(client, editor, incident["id"], body=body)
    assert status == 422
    assert error["error"] == "disclosure_review"
    assert error["message"]
    [finding] = error["findings"]
    assert finding["code"] == "mobile"
    assert body[finding["start"] : finding["end"]] == PHONE
    assert finding["excerpt"] == "138****5678"
    assert PHONE not in str(error)
    assert await head_seq(client, incident["id"]) == 0


async def test_offsets_count_characters_of_the_body(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Offsets are characters (code points), so an emoji before the number counts once."""
    incident = await create_incident(client, editor)
    body = f"🚒 消防队已到达。联系 {MAILBOX}"
    status, error = await post(client, editor, incident["id"], body=body)
    assert status == 422
    [finding] = error["findings"]
    assert (finding["code"], body[finding["start"] : finding["end"]]) == ("email", MAILBOX)


async def test_mask_stores_and_serves_the_masked_text(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """With "mask": true the server stores the masked text; the number is nowhere in the API."""
    incident = await create_incident(client, editor)
    entry = await post_entry(
        client, editor, incident["id"], body=f"请联系张先生{PHONE}。", mask=True
    )
    assert entry["body"] == "请联系张先生138****5678。"
    served = await (await client.get(f"/api/incidents/{incident['id']}/entries/1")).text()
    listed = await (await client.get(f"/api/incidents/{incident['id']}/entries")).text()
    assert "138****5678" in served
    assert PHONE not in served and PHONE not in listed
    [record] = await audit(client, admin, "disclosure.mask")
    assert record["target"] == f"{incident['id']}#1"
    assert [f["code"] for f in record["detail"]["findings"]] == ["mobile"]


async def test_acknowledged_text_is_published_and_recorded(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """An acknowledgement with a reason publishes the text as written and audits who and why."""
    incident = await create_incident(client, editor)
    body = f"媒体垂询请发邮件至 {MAILBOX}。"
    reason = "本局新闻办公开邮箱"
    entry = await post_entry(
        client,
        editor,
        incident["id"],
        body=body,
        acknowledge={"codes": ["email"], "reason": reason},
    )
    assert entry["body"] == body
    [record] = await audit(client, admin, "disclosure.acknowledge")
    assert record["actor"] == {"name": "值班编辑", "department": "应急管理局", "role": "editor"}
    assert record["remote"] == "127.0.0.1"
    assert record["target"] == f"{incident['id']}#1"
    assert record["detail"]["codes"] == ["email"]
    assert record["detail"]["reason"] == reason
    assert record["detail"]["findings"][0]["excerpt"] == "x***@yjj.qingdao.gov.cn"
    # Same transaction as the entry: the acknowledgement sits right after the append.
    [append] = await audit(client, admin, "entry.update")
    assert append["id"] == record["id"] - 1


async def test_partial_acknowledgement_is_refused(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """Acknowledging the e-mail but not the phone answers 422 and records nothing."""
    incident = await create_incident(client, editor)
    status, error = await post(
        client,
        editor,
        incident["id"],
        body=f"联系 {MAILBOX} 或 {PHONE}",
        acknowledge={"codes": ["email"], "reason": "公开邮箱"},
    )
    assert status == 422
    assert error["error"] == "acknowledge_incomplete"
    assert error["missing_codes"] == ["mobile"]
    assert [f["code"] for f in error["findings"]] == ["mobile"]
    assert await head_seq(client, incident["id"]) == 0
    assert await audit(client, admin, "disclosure.*") == []


@pytest.mark.parametrize(
    ("acknowledge", "code", "field"),
    [
        ({"codes": ["mobile"], "reason": " "}, "acknowledge_reason_required", "acknowledge.reason"),
        ({"codes": ["mobile"]}, "missing_field", "acknowledge.reason"),
        ({"codes": [], "reason": "x"}, "invalid_value", "acknowledge.codes"),
        ({"codes": ["phone"], "reason": "x"}, "invalid_value", "acknowledge.codes"),
        ({"codes": "mobile", "reason": "x"}, "invalid_type", "acknowledge.codes"),
        ({"codes": ["mobile"], "reason": "x", "by": "me"}, "unknown_field", "acknowledge.by"),
        ("yes", "invalid_type", "acknowledge"),
    ],
    ids=["blank-reason", "no-reason", "no-codes", "unknown-code", "codes-not-list", "extra", "str"],
)
async def test_bad_acknowledgements_are_refused(
    client: TestClient, editor: dict[str, str], acknowledge: Any, code: str, field: str
) -> None:
    """Each malformed acknowledgement answers 422 with its own code, naming the field."""
    incident = await create_incident(client, editor)
    status, error = await post(
        client, editor, incident["id"], body=f"电话{PHONE}", acknowledge=acknowledge
    )
    assert (status, error["error"], error["field"]) == (422, code, field)
    assert await head_seq(client, incident["id"]) == 0


async def test_mask_and_acknowledge_combine(client: TestClient, editor: dict[str, str]) -> None:
    """The office's own mailbox stays as acknowledged while a resident's phone is masked."""
    incident = await create_incident(client, editor)
    entry = await post_entry(
        client,
        editor,
        incident["id"],
        body=f"居民张某（{PHONE}）已获救。垂询：{MAILBOX}",
        mask=True,
        acknowledge={"codes": ["email"], "reason": "公开邮箱"},
    )
    assert entry["body"] == f"居民张某（138****5678）已获救。垂询：{MAILBOX}"


@pytest.mark.parametrize(
    "body",
    [
        "报警请拨110，火警119，急救120，交通事故122。",
        "市民服务热线12345，卫生健康热线12320，森林火警95119。",
        "值班电话：0532-88888888，(0532) 8888 8888，010-12345678。",
        "截至11月26日14时，共转移群众3400人，救出12人。",
    ],
    ids=["emergency", "hotlines", "landlines", "figures"],
)
async def test_public_numbers_pass(client: TestClient, editor: dict[str, str], body: str) -> None:
    """Public service numbers, landlines and counts publish without findings or answers."""
    incident = await create_incident(client, editor)
    entry = await post_entry(client, editor, incident["id"], body=body)
    assert entry["body"] == body


async def test_every_kind_is_reviewed(client: TestClient, editor: dict[str, str]) -> None:
    """Corrections and status changes are reviewed like updates."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"], body="道路已封闭。")
    status, error = await post(
        client, editor, incident["id"], kind="correction", corrects=1, body=f"更正：联系{PHONE}"
    )
    assert (status, error["error"]) == (422, "disclosure_review")
    status, error = await post(
        client, editor, incident["id"], kind="status", status="resolved", body=f"结束。{PHONE}"
    )
    assert (status, error["error"]) == (422, "disclosure_review")
    assert await head_seq(client, incident["id"]) == 1


async def test_replayed_acknowledged_post_is_recorded_once(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """A replayed Idempotency-Key neither appends again nor records the acknowledgement twice."""
    incident = await create_incident(client, editor)
    body = {"body": f"邮箱 {MAILBOX}", "acknowledge": {"codes": ["email"], "reason": "公开"}}
    url = f"/api/incidents/{incident['id']}/entries"
    headers = {**editor, "Idempotency-Key": "ack-1"}
    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert await first.json() == await again.json()
    assert len(await audit(client, admin, "disclosure.acknowledge")) == 1
    assert await head_seq(client, incident["id"]) == 1


def test_review_text_refuses_or_masks_public_text() -> None:
    """review_text (for public questions) raises the same 422 naming the field, or masks."""
    with pytest.raises(Unprocessable) as caught:
        review_text(f"我的电话{PHONE}，请回电", field="text")
    error = caught.value.body()
    assert (error["error"], error["field"]) == ("disclosure_review", "text")
    assert error["findings"][0]["excerpt"] == "138****5678"
    assert review_text(f"我的电话{PHONE}", mask=True) == "我的电话138****5678"
    assert review_text("请问12345热线几点开通？") == "请问12345热线几点开通？"


async def test_incident_text_is_reviewed_too(client: TestClient, editor: dict[str, str]) -> None:
    """A phone number in an incident's summary is refused with findings, or masked on request."""
    body = {
        "title": "沙子口街道山洪",
        "severity": "severe",
        "summary": "失联人员家属请联系13812345678。",
    }
    refused = await client.post("/api/incidents", json=body, headers=editor)
    assert refused.status == 422
    answer = await refused.json()
    assert answer["error"] == "disclosure_review" and answer["field"] == "summary"
    assert [f["code"] for f in answer["findings"]] == ["mobile"]
    assert (await (await client.get("/api/incidents")).json())["incidents"] == []
    created = await client.post("/api/incidents", json={**body, "mask": True}, headers=editor)
    assert created.status == 201
    assert (await created.json())["summary"] == "失联人员家属请联系138****5678。"
