"""Test SMS subscriptions, inbound commands and delivery reports through the signed JSON gateway.

The gateway here is a local endpoint speaking the signed JSON protocol, so
these tests run without Kannel (``test_sms_e2e.py`` covers Kannel).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, backend_options, create_incident, post_entry
from standardwebhooks.webhooks import Webhook
from test_webhooks import eventually
from webhook_receiver import Receiver

import channels.sms.service
from broadcaster.app import create_app
from broadcaster.appkeys import DB
from broadcaster.settings import Settings
from broadcaster.web import ratelimit
from channels.sms.kannel import KannelGateway
from channels.sms.signed_json import SignedJsonGateway
from channels.sms.text import segments
from channels.webhooks.send import sign

SECRET = "whsec_" + "c21zLWdhdGV3YXktdGVzdC1zZWNyZXQtMzI="
PHONE = "+8613800000001"
OTHER = "+8613900000002"
_msgids = itertools.count(1)


@pytest.fixture
async def gateway() -> AsyncIterator[Receiver]:
    """A signed JSON SMS gateway on loopback that accepts everything."""
    async with Receiver() as receiver:
        yield receiver


@pytest.fixture
def settings(
    tmp_path: Path, gateway: Receiver, backend: str, request: pytest.FixtureRequest
) -> Settings:
    """Settings sending SMS to the local gateway, with a retry schedule of a second."""
    base = gateway.url_for("/send").replace("http://", "")
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        public_url="http://example.test",
        sms_gateway=f"json+http://acct:{SECRET}@{base}",
        sms_signature="崂山区应急管理局",
        retry_schedule=(1, 1, 1),
        delivery_timeout=2,
        **backend_options(backend, request),
    )


async def text_in(client: TestClient, text: str, sender: str = PHONE, **extra: str) -> Any:
    """Send an MO as Kannel's get-url would, with a fresh msgid unless given."""
    params = {"from": sender, "to": "12379", "text": text, "msgid": f"m{next(_msgids)}", **extra}
    return await client.get("/sms/inbound", params=params)


async def next_sms(gateway: Receiver) -> dict[str, Any]:
    """Return the next message the gateway received, after checking its signature."""
    got = await gateway.next(TIMEOUT)
    return Webhook(SECRET).verify(got.body, got.headers)


async def subscribers(client: TestClient) -> list[str]:
    rows = await client.app[DB].read(
        lambda c: c.execute("SELECT number FROM sms_subscribers ORDER BY id").fetchall()
    )
    return [row[0] for row in rows]


async def subscribed_incident(client: TestClient, editor: Any, gateway: Receiver) -> Any:
    """Create incident SZK and subscribe PHONE to it, consuming the confirmation SMS."""
    incident = await create_incident(client, editor, code="SZK")
    await text_in(client, "订阅 SZK")
    await next_sms(gateway)
    return incident


async def test_subscribe_is_confirmed_by_sms(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """`订阅 CODE` subscribes the sender and a signed confirmation goes out through the gateway."""
    incident = await create_incident(client, editor, code="SZK")
    response = await text_in(client, "订阅 szk")
    assert response.status == 200 and await response.text() == ""
    sms = await next_sms(gateway)
    assert sms["to"] == PHONE
    assert sms["text"].startswith("【崂山区应急管理局】已订阅") and "SZK" in sms["text"]
    assert sms["id"].startswith("msg_")
    assert await subscribers(client) == [PHONE]
    assert incident["code"] == "SZK"


async def test_a_repeated_msgid_has_no_effect(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """The gateway retrying an MO (same msgid) neither subscribes twice nor replies twice."""
    await create_incident(client, editor, code="SZK")
    for _ in range(3):
        assert (await text_in(client, "SUB SZK", msgid="same")).status == 200
    await next_sms(gateway)
    await text_in(client, "TD", sender=OTHER)  # a later message proves the queue moved on
    assert (await next_sms(gateway))["to"] == OTHER
    assert len(gateway.received) == 2


async def test_sms_entry_reaches_each_subscriber_once_and_td_stops_it(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """An sms entry goes to every subscriber, whole; one too long is refused, never cut."""
    incident = await create_incident(client, editor, code="SZK", title="崂山区沙子口街道山洪")
    for phone in (PHONE, OTHER):
        await text_in(client, "订阅SZK", sender=phone)
        await next_sms(gateway)
    too_long = await client.post(
        f"/api/incidents/{incident['id']}/entries",
        json={"body": "沙子口街道水位持续上涨，" * 30, "sms": True},
        headers=editor,
    )
    refused = await too_long.json()
    assert (too_long.status, refused["error"]) == (422, "sms_too_long")
    assert (refused["sms"]["segments"], refused["sms"]["max_segments"]) == (7, 3)
    assert refused["sms"]["over_by"] == refused["sms"]["units"] - 3 * 67
    body = "沙子口街道水位持续上涨，" * 8 + "救援电话 0532-88888888。"
    entry = await post_entry(client, editor, incident["id"], body=body, sms=True)
    got = [await next_sms(gateway) for _ in range(2)]
    assert sorted(sms["to"] for sms in got) == [PHONE, OTHER]
    text = got[0]["text"]
    assert text.startswith("【崂山区应急管理局】崂山区沙子口街道山洪：沙子口街道")
    link = f"http://example.test/incidents/{incident['id']}/entries/{entry['seq']}"
    assert link in text and text.endswith("回TD退订")
    assert "救援电话 0532-88888888。" in text and "…" not in text
    assert segments(text) <= 3
    await text_in(client, "ＴＤ", sender=PHONE)
    assert "已退订" in (await next_sms(gateway))["text"]
    await post_entry(client, editor, incident["id"], body="第二条短信", sms=True)
    assert (await next_sms(gateway))["to"] == OTHER
    await post_entry(client, editor, incident["id"], body="不发短信")
    await text_in(client, "帮助", sender=OTHER)
    assert "订阅 SZK" in (await next_sms(gateway))["text"]
    assert len(gateway.received) == 7


async def test_the_fan_out_queues_subscribers_in_the_order_they_subscribed(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """An sms entry's deliveries are numbered in subscription order, however rows are stored."""
    incident = await create_incident(client, editor, code="SZK")
    for n in reversed(range(5)):  # numbers (the index order) descend as ids ascend
        await text_in(client, "订阅SZK", sender=f"+86138000001{n:02d}")
        await next_sms(gateway)

    def rewrite_first(conn: Any) -> None:  # PostgreSQL stores the new row version last
        conn.execute(
            "UPDATE sms_subscribers SET source = source"
            " WHERE id = (SELECT MIN(id) FROM sms_subscribers)"
        )

    await client.app[DB].write(rewrite_first)
    await post_entry(client, editor, incident["id"], body="请立即转移。", sms=True)

    def order(conn: Any) -> tuple[list[int], list[int]]:
        queued = conn.execute(
            "SELECT target FROM deliveries WHERE event = 'entry.sms' ORDER BY id"
        ).fetchall()
        subscribed = conn.execute("SELECT id FROM sms_subscribers ORDER BY id").fetchall()
        return [row[0] for row in queued], [row[0] for row in subscribed]

    queued, subscribed = await client.app[DB].read(order)
    assert queued == subscribed and len(queued) == 5


async def test_unknown_codes_and_words_get_help(client: TestClient, gateway: Receiver) -> None:
    """An unknown code says so; an unknown word gets the help text."""
    await text_in(client, "订阅 NOPE")
    assert "NOPE" in (await next_sms(gateway))["text"]
    await text_in(client, "你好")
    assert "订阅" in (await next_sms(gateway))["text"]
    assert await subscribers(client) == []


async def test_replies_are_rate_limited_per_number_but_td_always_works(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """A number flooding the service gets five replies; its TD still unsubscribes it."""
    await create_incident(client, editor, code="SZK")
    for _ in range(5):
        await text_in(client, "订阅 SZK")
    await text_in(client, "退订")
    for _ in range(5):
        await next_sms(gateway)
    assert await subscribers(client) == []
    await text_in(client, "TD", sender=OTHER)
    assert (await next_sms(gateway))["to"] == OTHER
    assert len(gateway.received) == 6


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "10086", "text": "TD", "msgid": "x1"}, "invalid_number"),
        ({"from": "abc", "text": "TD", "msgid": "x2"}, "invalid_number"),
        ({"from": PHONE, "text": "TD"}, "invalid_field"),
        ({"from": PHONE, "msgid": "x3"}, "invalid_field"),
    ],
)
async def test_bad_inbound_messages_are_refused(
    client: TestClient, params: dict[str, str], code: str
) -> None:
    """A message without a usable number, text or msgid answers 422 and changes nothing."""
    response = await client.get("/sms/inbound", params=params)
    assert response.status == 422
    assert (await response.json())["error"] == code
    assert await subscribers(client) == []


async def test_callbacks_through_a_proxy_need_the_secret(client: TestClient) -> None:
    """Without a secret only a direct loopback peer is trusted, not one behind a proxy."""
    response = await client.get(
        "/sms/inbound",
        params={"from": PHONE, "text": "TD", "msgid": "p1"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status == 401
    assert (await response.json())["error"] == "gateway_auth"


async def test_the_shared_secret_is_required_once_set(
    settings: Settings, gateway: Receiver
) -> None:
    """With BROADCASTER_SMS_SECRET set, a missing or wrong secret answers 401."""
    app = create_app(settings.with_(sms_secret="s3cret-value"))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        base = {"from": PHONE, "text": "TD", "msgid": "s1"}
        assert (await client.get("/sms/inbound", params=base)).status == 401
        wrong = {**base, "secret": "nope"}
        assert (await client.get("/sms/inbound", params=wrong)).status == 401
        right = await client.get("/sms/inbound", params={**base, "secret": "s3cret-value"})
        assert right.status == 200
        header = await client.get(
            "/sms/dlr",
            params={"message_id": "msg_999", "type": "1"},
            headers={"X-Broadcaster-Secret": "s3cret-value"},
        )
        assert header.status == 200


async def sms_states(client: TestClient) -> list[str]:
    rows = await client.app[DB].read(
        lambda c: c.execute(
            "SELECT state FROM deliveries WHERE channel = 'sms' AND event = 'entry.sms'"
        ).fetchall()
    )
    return [row[0] for row in rows]


async def test_delivery_reports_only_move_forward(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """Delivered is never downgraded by a late report; unknown ids answer 200 and do nothing."""
    incident = await subscribed_incident(client, editor, gateway)
    await post_entry(client, editor, incident["id"], body="测试", sms=True)
    sms = await next_sms(gateway)
    await eventually(lambda: _is(client, ["accepted"]), "the SMS accepted")
    for kind in ("1", "8", "16", "4"):
        response = await client.get("/sms/dlr", params={"message_id": sms["id"], "type": kind})
        assert response.status == 200
    assert await sms_states(client) == ["delivered"]
    for unknown in ("msg_424242", "nonsense"):
        response = await client.get("/sms/dlr", params={"message_id": unknown, "type": "1"})
        assert response.status == 200
    response = await client.get("/sms/dlr", params={"message_id": sms["id"], "type": "3"})
    assert response.status == 422


async def _is(client: TestClient, states: list[str]) -> bool:
    return await sms_states(client) == states


async def test_signed_json_reports_are_verified(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """A JSON delivery report needs a valid signature; a signed one is applied."""
    incident = await subscribed_incident(client, editor, gateway)
    await post_entry(client, editor, incident["id"], body="测试", sms=True)
    sms = await next_sms(gateway)
    body = json.dumps({"message_id": sms["id"], "status": "delivered"})
    headers = sign(SECRET, "evt_1", body)
    forged = {**headers, "webhook-signature": "v1,Zm9yZ2Vk"}
    response = await client.post("/sms/dlr", data=body, headers=forged)
    assert response.status == 401
    assert (await response.json())["error"] == "gateway_signature"
    response = await client.post("/sms/dlr", data=body, headers=headers)
    assert response.status == 200
    await eventually(lambda: _is(client, ["delivered"]), "the report applied")


@pytest.mark.slow
async def test_an_entry_redacted_before_sending_is_not_texted(
    client: TestClient, admin: Any, editor: Any, gateway: Receiver
) -> None:
    """When the gateway was down and the entry is redacted meanwhile, the SMS is cancelled."""
    incident = await subscribed_incident(client, editor, gateway)
    gateway.answers = [503]
    await post_entry(client, editor, incident["id"], body="误发的短信内容", sms=True)
    await gateway.next(TIMEOUT)
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries/1/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "误发"},
        headers=admin,
    )
    assert response.status == 201
    await eventually(lambda: _is(client, ["cancelled"]), "the SMS cancelled")
    assert len(gateway.received) == 2


async def test_admins_see_counts_and_masked_numbers_only(
    client: TestClient, admin: Any, editor: Any, gateway: Receiver
) -> None:
    """The admin view masks numbers; editors and the public cannot read it."""
    incident = await subscribed_incident(client, editor, gateway)
    response = await client.get(f"/api/incidents/{incident['id']}/sms", headers=admin)
    view = await response.json()
    assert view["subscribers"] == 1
    assert view["recent"][0]["number"] == "+86138****0001"
    assert PHONE not in json.dumps(view)
    path = f"/api/incidents/{incident['id']}/sms"
    assert (await client.get(path, headers=editor)).status == 403
    assert (await client.get(path)).status == 401
    public = await (await client.get(f"/api/incidents/{incident['id']}")).text()
    assert PHONE not in public and "13800000001" not in public


async def test_no_gateway_means_sms_endpoints_say_so(tmp_path: Path) -> None:
    """Without BROADCASTER_SMS_GATEWAY the SMS endpoints answer 404 sms_disabled."""
    settings = Settings.from_env({}, data_dir=tmp_path / "plain")
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        response = await client.get("/sms/inbound", params={"from": PHONE, "text": "TD"})
        assert response.status == 404
        assert (await response.json())["error"] == "sms_disabled"


async def test_an_incident_takes_a_capped_number_of_subscribers(
    client: TestClient, editor: Any, gateway: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap a newcomer is told the list is full and is not added."""
    monkeypatch.setattr(channels.sms.service, "MAX_SUBSCRIBERS", 1)
    await create_incident(client, editor, code="SZK")
    await text_in(client, "订阅 SZK", sender=PHONE)
    await next_sms(gateway)
    await text_in(client, "订阅 SZK", sender=OTHER)
    assert "已满" in (await next_sms(gateway))["text"]
    assert await subscribers(client) == [PHONE]


async def test_gateways_refuse_a_closed_session_they_do_not_own() -> None:
    """A gateway never replaces a caller's closed session with one nobody would close."""
    session = aiohttp.ClientSession()
    await session.close()
    gateways = (
        KannelGateway("http://127.0.0.1:9/cgi-bin/sendsms", "u", "p", "12379", None,
                      session=session),
        SignedJsonGateway("http://127.0.0.1:9/sms", "whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==",
                          "county", "12379", None, session=session),
    )  # fmt: skip
    for gateway in gateways:
        with pytest.raises(RuntimeError, match="closed"):
            await gateway.send(to="+8613812345678", text="测试", message_id="m1")


async def test_a_proxy_setting_only_x_real_ip_does_not_make_everyone_the_gateway(
    client: TestClient, editor: dict[str, str]
) -> None:
    """The attack: behind a local proxy that sets only X-Real-IP, anyone subscribed numbers and
    forged delivery reports. Now every such callback answers 401 and nothing changes."""
    incident = await create_incident(client, editor)
    for n in range(20):
        params = {
            "from": f"+861380000{n:04d}",
            "text": f"订阅 {incident['code']}",
            "msgid": f"r{n}",
        }
        response = await client.get(
            "/sms/inbound", params=params, headers={"X-Real-IP": f"198.51.100.{n}"}
        )
        assert response.status == 401
    assert await subscribers(client) == []
    forged = await client.get(
        "/sms/dlr", params={"message_id": "msg_1", "status": "delivered"},
        headers={"X-Real-IP": "198.51.100.1"},
    )  # fmt: skip
    assert forged.status == 401


async def test_with_a_trusted_proxy_callbacks_need_the_secret(
    settings: Settings, editor: dict[str, str]
) -> None:
    """Once a proxy is configured, even a loopback peer without headers needs the secret."""
    app = create_app(settings.with_(trusted_proxies=("127.0.0.1/32",)))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as proxied:
        response = await proxied.get(
            "/sms/inbound", params={"from": PHONE, "text": "TD", "msgid": "t1"}
        )
        assert response.status == 401
        assert (await response.json())["error"] == "gateway_auth"


async def test_serve_says_whom_sms_callbacks_are_taken_from(settings: Settings) -> None:
    """The start-up notice names the rule in force for SMS callbacks."""
    from broadcaster.cli.serve import trust_notice

    assert "only from a loopback peer" in trust_notice(settings)
    assert "REFUSED" in trust_notice(settings.with_(trusted_proxies=("10.0.0.1/32",)))
    assert "need BROADCASTER_SMS_SECRET" in trust_notice(settings.with_(sms_secret="s"))


async def test_the_reply_limit_per_number_is_shared_between_nodes(
    tmp_path: Path, redis_url: str, gateway: Receiver, settings: Settings
) -> None:
    """Two nodes on one Redis answer a number RATE_COUNT times in all, not each."""
    from channels.sms.replies import RATE_COUNT, sender_key
    from channels.sms.service import RECENT

    apps = [
        create_app(settings.with_(data_dir=tmp_path / name, redis_url=redis_url, signing_key=None))
        for name in "ab"
    ]
    key = sender_key(settings, f"+86139{next(_msgids):08d}")
    waits = [await apps[n % 2][RECENT].count(key) for n in range(RATE_COUNT + 2)]
    for app in apps:  # never started, so close their Redis clients here
        await app[ratelimit._CLIENT].aclose()
    assert waits[:RATE_COUNT] == [0] * RATE_COUNT
    assert all(w > 0 for w in waits[RATE_COUNT:])
