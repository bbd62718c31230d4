"""Test areas and standing alerts: the areas table, incidents' areas, SMS and webhooks by area.

The SMS gateway here is the signed JSON one on loopback (``test_areas_kannel.py``
goes through Kannel); the areas are the example file shipped in
``docs/examples/areas-laoshan.csv``, loaded through ``BROADCASTER_AREAS_FILE``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import TIMEOUT, backend_options, create_incident, post_entry
from standardwebhooks.webhooks import Webhook
from test_webhooks import deliveries, eventually, register, unsent
from webhook_receiver import Receiver

from broadcaster.appkeys import DB
from broadcaster.settings import Settings

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "areas-laoshan.csv"
SECRET = "whsec_" + "YXJlYXMtdGVzdC1nYXRld2F5LXNlY3JldC0zMg=="
PHONES = [f"+861380000{n:04d}" for n in range(1, 6)]
_msgids = itertools.count(1)


@pytest.fixture
async def gateway() -> AsyncIterator[Receiver]:
    """A signed JSON SMS gateway on loopback that accepts everything."""
    async with Receiver() as receiver:
        yield receiver


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    """A webhook endpoint on loopback."""
    async with Receiver() as receiver:
        yield receiver


@pytest.fixture
def settings(
    tmp_path: Path, gateway: Receiver, backend: str, request: pytest.FixtureRequest
) -> Settings:
    """Settings with the example areas, the local SMS gateway and loopback webhooks."""
    base = gateway.url_for("/send").replace("http://", "")
    return Settings.from_env(
        {"BROADCASTER_AREAS_FILE": str(EXAMPLE)},
        data_dir=tmp_path / "data",
        public_url="http://example.test",
        sms_gateway=f"json+http://acct:{SECRET}@{base}",
        sms_signature="崂山区应急管理局",
        webhook_allow=("127.0.0.1",),
        retry_schedule=(1, 1, 1),
        delivery_timeout=2,
        **backend_options(backend, request),
    )


async def text_in(client: TestClient, text: str, sender: str) -> None:
    """Send an MO as Kannel's get-url would."""
    params = {"from": sender, "to": "12379", "text": text, "msgid": f"a{next(_msgids)}"}
    response = await client.get("/sms/inbound", params=params)
    assert response.status == 200


async def reply_to(client: TestClient, gateway: Receiver, text: str, sender: str) -> str:
    """Text ``text`` from ``sender`` and return the reply the gateway is asked to send."""
    await text_in(client, text, sender)
    got = await next_sms(gateway)
    assert got["to"] == sender
    return str(got["text"])


async def next_sms(gateway: Receiver) -> dict[str, Any]:
    got = await gateway.next(TIMEOUT)
    return Webhook(SECRET).verify(got.body, got.headers)


async def queued(client: TestClient) -> list[tuple[str, int, str]]:
    """Return (incident, seq, number) of every entry SMS queued, whichever subscription."""

    def job(conn: Any) -> list[tuple[str, int, str]]:
        rows = conn.execute(
            "SELECT d.incident, d.seq, COALESCE(s.number, a.number) FROM deliveries d"
            " LEFT JOIN sms_subscribers s ON d.event = 'entry.sms' AND s.id = d.target"
            " LEFT JOIN sms_area_subscribers a ON d.event = 'entry.sms.area' AND a.id = d.target"
            " WHERE d.channel = 'sms' AND d.event LIKE 'entry.sms%' ORDER BY d.id"
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    return await client.app[DB].read(job)


async def drained(client: TestClient, gateway: Receiver, count: int) -> list[dict[str, Any]]:
    """Wait for ``count`` entry SMS to reach the gateway; return every message it received."""

    async def probe() -> bool:
        sent = await client.app[DB].read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM deliveries WHERE event LIKE 'entry.sms%'"
                " AND state NOT IN ('pending')"
            ).fetchone()[0]
        )
        return sent == count

    await eventually(probe, f"{count} entry SMS sent")
    return [Webhook(SECRET).verify(r.body, r.headers) for r in gateway.received]


# -- the areas table ---------------------------------------------------------------------------


async def test_the_areas_file_is_loaded_and_listed(client: TestClient) -> None:
    """The operator's CSV becomes the table GET /api/areas lists, with aliases and parents."""
    response = await client.get("/api/areas")
    assert response.status == 200
    areas = {a["code"]: a for a in (await response.json())["areas"]}
    assert len(areas) == 8
    assert areas["370212"] == {
        "code": "370212",
        "name": "崂山区",
        "aliases": ["崂山", "青岛崂山区"],
        "parent": "370200",
    }
    assert areas["370212002"]["parent"] == "370212"


async def test_admins_put_areas(client: TestClient, admin: dict[str, str], editor: Any) -> None:
    """PUT /api/areas/{code} creates (201) then replaces (200); only admins may; bad input 422."""
    body = {"name": "黄岛区", "aliases": ["西海岸新区"]}
    assert (await client.put("/api/areas/370211", json=body)).status == 401
    assert (await client.put("/api/areas/370211", json=body, headers=editor)).status == 403
    response = await client.put("/api/areas/370211", json=body, headers=admin)
    assert response.status == 201
    assert (await response.json())["parent"] is None
    body["parent"] = "370200"
    response = await client.put("/api/areas/370211", json=body, headers=admin)
    assert response.status == 200 and (await response.json())["parent"] == "370200"
    bad = [
        ("/api/areas/37-02", {"name": "x"}, "code"),
        ("/api/areas/370213", {"name": "x", "parent": "999999"}, "parent"),
        ("/api/areas/370213", {"name": " "}, "name"),
        ("/api/areas/370213", {"name": "x", "aliases": "崂山"}, "aliases"),
        ("/api/areas/370213", {"name": "x", "extra": 1}, "extra"),
    ]
    for path, payload, field in bad:
        response = await client.put(path, json=payload, headers=admin)
        assert response.status == 422, (path, payload)
        assert (await response.json())["field"] == field
    area = await (await client.get("/api/areas/370211")).json()
    assert area["name"] == "黄岛区" and area["incidents"] == []


async def test_incidents_carry_known_areas_only(client: TestClient, editor: Any) -> None:
    """An unknown area code answers 422 unknown_area naming the field, and nothing is created."""
    response = await client.post(
        "/api/incidents",
        json={"title": "山洪", "severity": "severe", "areas": ["370212", "999999"]},
        headers=editor,
    )
    assert response.status == 422
    error = await response.json()
    assert (error["error"], error["field"]) == ("unknown_area", "areas")
    assert (await (await client.get("/api/incidents")).json())["incidents"] == []
    incident = await create_incident(client, editor, areas=["370212002", "370212"], area="沙子口")
    assert incident["areas"] == ["370212002", "370212"] and incident["area"] == "沙子口"
    again = await (await client.get(f"/api/incidents/{incident['id']}")).json()
    assert again["areas"] == ["370212002", "370212"]
    plain = await create_incident(client, editor)
    assert plain["areas"] == []
    reached = await (await client.get("/api/areas/370200")).json()
    assert [i["id"] for i in reached["incidents"]] == [incident["id"]]


# -- SMS ---------------------------------------------------------------------------------------


async def test_area_subscribers_get_the_first_sms_entry_and_status_changes_once(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """Each phone gets the first SMS entry and later SMS status entries once, however it matched.

    PHONES[0] follows 崂山区; PHONES[1] follows 沙子口街道 and, through an alias, 崂山区 too;
    PHONES[2] follows 崂山区 and the incident itself; PHONES[3] follows 青岛市.
    """
    assert "崂山区" in await reply_to(client, gateway, "订阅 崂山区", PHONES[0])
    assert "沙子口街道" in await reply_to(client, gateway, "SUB 370212002", PHONES[1])
    assert "崂山区" in await reply_to(client, gateway, "订阅崂山", PHONES[1])
    await reply_to(client, gateway, "订阅 370212", PHONES[2])
    await reply_to(client, gateway, "ＳＵＢ　３７０２００", PHONES[3])
    incident = await create_incident(
        client, editor, code="SZK", title="沙子口山洪", areas=["370212002"]
    )
    assert "SZK" in await reply_to(client, gateway, "订阅 SZK", PHONES[2])
    gateway.received.clear()
    await post_entry(client, editor, incident["id"], body="网站先发一条。")
    first = await post_entry(client, editor, incident["id"], body="请立即转移到高处。", sms=True)
    await post_entry(client, editor, incident["id"], body="第二条短信。", sms=True)
    status = await post_entry(
        client, editor, incident["id"], kind="status", status="resolved", body="", sms=True
    )
    expected = sorted(
        [(incident["id"], first["seq"], phone) for phone in PHONES[:4]]
        + [(incident["id"], first["seq"] + 1, PHONES[2])]
        + [(incident["id"], status["seq"], phone) for phone in PHONES[:4]]
    )
    assert sorted(await queued(client)) == expected
    messages = await drained(client, gateway, len(expected))
    assert len(messages) == len(expected)
    alert = next(m for m in messages if m["to"] == PHONES[0] and "转移" in m["text"])
    assert alert["text"].startswith("【崂山区应急管理局】沙子口山洪：请立即转移到高处。")
    assert "订阅SZK" in alert["text"] and alert["text"].endswith("回TD退订")


async def test_severity_levels_and_unrelated_areas(
    client: TestClient, editor: Any, admin: Any, gateway: Receiver
) -> None:
    """A moderate incident reaches only "全部" subscribers; another district reaches nobody here."""
    await reply_to(client, gateway, "订阅 崂山区", PHONES[0])
    reply = await reply_to(client, gateway, "订阅 崂山区 全部", PHONES[1])
    assert "全部级别" in reply
    await client.put("/api/areas/370211", json={"name": "黄岛区"}, headers=admin)
    moderate = await create_incident(client, editor, severity="moderate", areas=["370212"])
    elsewhere = await create_incident(client, editor, severity="extreme", areas=["370211"])
    await post_entry(client, editor, moderate["id"], sms=True)
    await post_entry(client, editor, elsewhere["id"], sms=True)
    assert await queued(client) == [(moderate["id"], 1, PHONES[1])]
    # A repeat without 全部 brings the level back to severe.
    await reply_to(client, gateway, "SUB 370212", PHONES[1])
    minor = await create_incident(client, editor, severity="minor", areas=["370212001"])
    await post_entry(client, editor, minor["id"], sms=True)
    assert len(await queued(client)) == 1


async def test_an_entry_held_for_review_alerts_when_approved(
    client: TestClient, editor: Any, reviewer: Any, gateway: Receiver
) -> None:
    """Under two-person review the first SMS entry reaches area subscribers once approved."""
    await reply_to(client, gateway, "订阅 王哥庄", PHONES[0])
    incident = await create_incident(client, editor, areas=["370212"], require_approval=True)
    response = await client.post(
        f"/api/incidents/{incident['id']}/entries",
        json={"body": "请立即转移。", "sms": True},
        headers=editor,
    )
    assert response.status == 202
    assert await queued(client) == []
    draft = (await response.json())["draft_id"]
    approved = await client.post(f"/api/drafts/{draft}/approve", headers=reviewer)
    assert approved.status in (200, 201), await approved.text()
    assert await queued(client) == [(incident["id"], 1, PHONES[0])]


async def test_td_ends_area_alerts_and_one_area_can_be_left(
    client: TestClient, editor: Any, gateway: Receiver
) -> None:
    """退订 崂山区 leaves that area only; TD leaves every area and incident."""
    await reply_to(client, gateway, "订阅 崂山区", PHONES[0])
    await reply_to(client, gateway, "订阅 北宅", PHONES[0])
    assert "已退订「崂山区」" in await reply_to(client, gateway, "退订 崂山区", PHONES[0])
    one = await create_incident(client, editor, areas=["370212001"])
    two = await create_incident(client, editor, areas=["370212004"])
    await post_entry(client, editor, one["id"], sms=True)
    await post_entry(client, editor, two["id"], sms=True)
    assert await queued(client) == [(two["id"], 1, PHONES[0])]
    assert "订阅" in (await next_sms(gateway))["text"]  # the alert, before TD's reply
    assert "已退订全部" in await reply_to(client, gateway, "ＴＤ", PHONES[0])
    three = await create_incident(client, editor, areas=["370212004"])
    await post_entry(client, editor, three["id"], sms=True)
    assert len(await queued(client)) == 1

    def numbers(conn: Any) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM sms_area_subscribers").fetchone()[0])

    assert await client.app[DB].read(numbers) == 0


async def test_unknown_areas_are_answered_helpfully(client: TestClient, gateway: Receiver) -> None:
    """A near miss suggests the area; a name the site lacks says so and gives an example."""
    reply = await reply_to(client, gateway, "订阅 崂山区沙子口", PHONES[0])
    assert "未找到" in reply and "370212" in reply
    reply = await reply_to(client, gateway, "订阅 深圳", PHONES[1])
    assert "未找到地区“深圳”" in reply and "订阅 " in reply
    reply = await reply_to(client, gateway, "SUB 999999", PHONES[2])
    assert "999999" in reply
    reply = await reply_to(client, gateway, "订阅 NOPE", PHONES[3])
    assert "NOPE" in reply and "事件" in reply

    def count(conn: Any) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM sms_area_subscribers").fetchone()[0])

    assert await client.app[DB].read(count) == 0


# -- webhooks ----------------------------------------------------------------------------------


async def test_webhooks_filter_by_area_and_severity(
    client: TestClient, editor: Any, admin: Any, hooks: Receiver
) -> None:
    """An endpoint gets the entries of incidents reaching its areas, from its severity up."""
    severe_laoshan = await register(
        client, admin, hooks.url_for("/laoshan"), areas=["370212"], min_severity="severe"
    )
    assert severe_laoshan["areas"] == ["370212"] and severe_laoshan["min_severity"] == "severe"
    beizhai = await register(client, admin, hooks.url_for("/beizhai"), areas=["370212004"])
    extreme = await register(client, admin, hooks.url_for("/extreme"), min_severity="extreme")
    response = await client.post(
        "/api/webhooks", json={"url": hooks.url, "areas": ["999999"]}, headers=admin
    )
    assert response.status == 422 and (await response.json())["error"] == "unknown_area"
    response = await client.post(
        "/api/webhooks", json={"url": hooks.url, "min_severity": "bad"}, headers=admin
    )
    assert response.status == 422 and (await response.json())["field"] == "min_severity"
    street = await create_incident(client, editor, severity="severe", areas=["370212002"])
    mild = await create_incident(client, editor, severity="minor", areas=["370212"])
    await post_entry(client, editor, street["id"], body="沙子口")
    await post_entry(client, editor, mild["id"], body="全区")
    # Deliveries are queued with the entry, before its 201: none for /extreme now means none.
    assert await deliveries(client, admin, extreme["id"]) == []
    for hook, incident in ((severe_laoshan, street), (beizhai, mild)):
        listed = await unsent(client, admin, hook["id"])
        assert [(d["incident"], d["state"]) for d in listed] == [(incident["id"], "delivered")]
    got = sorted((r.path, json.loads(r.body)["data"]["incident"]) for r in hooks.received)
    assert got == [("/beizhai", mild["id"]), ("/laoshan", street["id"])]


# -- feeds, pages, CAP, search -----------------------------------------------------------------


async def test_area_feeds_list_the_areas_entries(client: TestClient, editor: Any) -> None:
    """Area feeds parse in feedparser and list only entries of incidents reaching the area."""
    import feedparser

    inside = await create_incident(client, editor, title="沙子口山洪", areas=["370212002"])
    outside = await create_incident(client, editor, title="别处")
    await post_entry(client, editor, inside["id"], body="区内通报")
    await post_entry(client, editor, outside["id"], body="区外通报")
    link = f"http://example.test/incidents/{inside['id']}/entries/1"
    for fmt in ("atom", "rss", "json"):
        response = await client.get(f"/areas/370212/feed.{fmt}")
        assert response.status == 200, fmt
        body = await response.read()
        if fmt == "json":
            items = json.loads(body)["items"]
            assert [item["id"] for item in items] == [link]
        else:
            parsed = feedparser.parse(body)
            assert not parsed.bozo, parsed.bozo_exception
            assert [e.link for e in parsed.entries] == [link]
            assert "崂山区" in parsed.feed.title
        again = await client.get(
            f"/areas/370212/feed.{fmt}", headers={"If-None-Match": response.headers["ETag"]}
        )
        assert again.status == 304
    await post_entry(client, editor, inside["id"], body="第二条")
    parsed = feedparser.parse(await (await client.get("/areas/370200/feed.atom")).read())
    assert len(parsed.entries) == 2
    assert (await client.get("/areas/999999/feed.atom")).status == 404


async def test_areas_show_on_pages_and_in_search(client: TestClient, editor: Any) -> None:
    """The area page lists its incidents; the incident page links its areas; search finds them."""
    incident = await create_incident(client, editor, title="北宅山洪", areas=["370212004"])
    await post_entry(client, editor, incident["id"], body="北宅通报")
    page = await (await client.get("/areas/370212")).text()
    assert "崂山区" in page and "北宅山洪" in page and "/areas/370212/feed.atom" in page
    assert "北宅通报" in page and "/api/areas/370212" in page
    live = await (await client.get(f"/incidents/{incident['id']}")).text()
    assert 'href="/areas/370212004"' in live and "北宅街道" in live
    index = await (await client.get("/areas")).text()
    assert "沙子口街道" in index
    missing = await client.get("/areas/999999", headers={"Accept": "text/html"})
    assert missing.status == 404
    found = await (await client.get("/api/search", params={"q": "北宅"})).json()
    assert {"code": "370212004", "name": "北宅街道"} in found["areas"]
    search_page = await (await client.get("/search", params={"q": "王哥庄"})).text()
    assert 'href="/areas/370212003"' in search_page


async def test_cap_carries_each_area_as_a_geocode(client: TestClient, editor: Any) -> None:
    """Each area becomes an <area> with its name and a geocode, valid against the CAP XSD."""
    import xmlschema
    from lxml import etree

    from channels.cap.render import CAP_NS

    schema = xmlschema.XMLSchema(str(Path(__file__).parent / "schemas" / "CAP-v1.2.xsd"))
    incident = await create_incident(client, editor, areas=["370212", "370212002"])
    await post_entry(client, editor, incident["id"])
    response = await client.get(f"/incidents/{incident['id']}/cap.xml")
    body = await response.read()
    schema.validate(body)
    ns = {"cap": CAP_NS}
    areas = etree.fromstring(body).findall("cap:info/cap:area", ns)
    found = [
        (
            a.findtext("cap:areaDesc", namespaces=ns),
            a.findtext("cap:geocode/cap:valueName", namespaces=ns),
            a.findtext("cap:geocode/cap:value", namespaces=ns),
        )
        for a in areas
    ]
    assert found == [
        ("崂山区", "GB/T 2260", "370212"),
        ("沙子口街道", "site-area-code", "370212002"),
    ]
