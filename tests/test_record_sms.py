"""SMS you can trust: the preview is the message, nothing is cut, level changes go out.

Uses the signed JSON gateway of ``test_sms_service`` (its ``settings`` and
``gateway`` fixtures), on both backends.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry
from test_sms_service import gateway, next_sms, settings, text_in  # noqa: F401 (fixtures)
from webhook_receiver import Receiver

from channels.sms.text import segments

BODY = (
    "沙子口街道沿河低洼处水位超过警戒线，请居民立即向高处转移。被困请拨打救援电话 0532-88889999。"
)


async def preview(client: TestClient, editor: Any, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/preview", json=body, headers=editor)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_the_preview_is_the_message_each_subscriber_receives(
    client: TestClient,
    editor: Any,
    gateway: Receiver,  # noqa: F811
) -> None:
    """``/api/preview`` composes with the sender's code: the same text, parts counted whole."""
    incident = await create_incident(client, editor, code="SZK", title="崂山区沙子口街道山洪")
    await text_in(client, "订阅 SZK")
    await next_sms(gateway)
    shown = (await preview(client, editor, body=BODY, incident=incident["id"]))["sms"]
    assert shown["text"].startswith("【崂山区应急管理局】崂山区沙子口街道山洪：")
    assert shown["text"].endswith("/entries/1 回TD退订")
    assert (shown["segments"], shown["fits"]) == (segments(shown["text"]), True)
    assert shown["segments"] == 2  # the body alone is 1 part: the real message is not
    await post_entry(client, editor, incident["id"], body=BODY, sms=True)
    received = await next_sms(gateway)
    assert received["text"] == shown["text"]
    assert "救援电话 0532-88889999" in received["text"]


async def test_an_sms_that_would_be_cut_is_refused(
    client: TestClient,
    editor: Any,
    gateway: Receiver,  # noqa: F811
) -> None:
    """Over the part limit answers 422 naming the overflow; nothing is stored or sent."""
    incident = await create_incident(client, editor, code="SZK")
    long_body = BODY * 3
    shown = (await preview(client, editor, body=long_body, incident=incident["id"]))["sms"]
    assert not shown["fits"] and shown["over_by"] > 0
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries",
        json={"body": long_body, "sms": True},
        headers=editor,
    )
    refused = await response.json()
    assert (response.status, refused["error"], refused["field"]) == (422, "sms_too_long", "body")
    assert refused["sms"]["segments"] == shown["segments"] > refused["sms"]["max_segments"]
    assert f"{refused['sms']['over_by']}" in refused["message"]
    listed = await (await client.get(f"/api/incidents/{incident['id']}/entries")).json()
    assert listed["entries"] == []
    without = await post_entry(client, editor, incident["id"], body=long_body)
    assert without["sms"] is False  # the same text without SMS is fine


async def test_a_level_change_reaches_subscribers(
    client: TestClient,
    editor: Any,
    gateway: Receiver,  # noqa: F811
) -> None:
    """Escalation and de-escalation go out by SMS, saying what changed and what to do."""
    incident = await create_incident(client, editor, code="SZK", title="沙子口山洪")
    await text_in(client, "订阅 SZK")
    await next_sms(gateway)
    await post_entry(client, editor, incident["id"], body="水位上涨。")
    body = {"kind": "status", "body": "", "severity": "extreme", "advice": "现在应做：立即转移。"}
    shown = (await preview(client, editor, incident=incident["id"], **body))["sms"]
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries", json=body, headers=editor
    )
    assert response.status == 201
    text = (await next_sms(gateway))["text"]
    assert text == shown["text"]
    assert "预警级别调整为一级 · 红色预警。现在应做：立即转移。" in text
    down = {"kind": "status", "body": "水位回落。", "severity": "moderate"}
    assert (await client.post(
        f"/api/incidents/{incident['id']}/entries", json=down, headers=editor
    )).status == 201  # fmt: skip
    text = (await next_sms(gateway))["text"]
    assert "预警级别调整为三级 · 黄色预警。" in text and "水位回落。" in text
