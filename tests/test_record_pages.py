"""What the pages, feeds and search tell people after state changes, corrections and redactions.

Server-rendered HTML only (no browser; ``tests/browser/test_record_browser.py``
covers the live behaviour and ``test_accessibility.py`` runs axe-core), on
both backends.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from conftest import create_incident, post_entry

from broadcaster.app import create_app
from broadcaster.settings import Settings

HTML = {"Accept": "text/html"}
LEAK = {
    "title": "李沧区化工厂氨气泄漏",
    "severity": "severe",
    "advice": "现在应做：关闭门窗，留在室内。",
    "summary": "下风向 2 公里内居民请关闭门窗。",
}


async def page(client: TestClient, path: str) -> str:
    response = await client.get(path, headers=HTML)
    assert response.status == 200, path
    return await response.text()


async def change(client: TestClient, editor: Any, incident_id: str, **fields: Any) -> Any:
    body = {"kind": "status", "body": "", "sms": False, **fields}
    response = await client.post(f"/api/incidents/{incident_id}/entries", json=body, headers=editor)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_a_resolved_incident_gives_no_advice(client: TestClient, editor: Any) -> None:
    """The top of the page follows the incident: new level and advice, none once it is over."""
    incident = await create_incident(client, editor, **LEAK)
    iid = incident["id"]
    await post_entry(client, editor, iid, body="储罐阀门泄漏。")
    html = await page(client, f"/incidents/{iid}")
    assert 'class="nowdo">现在应做：关闭门窗，留在室内。</span>' in html
    await change(client, editor, iid, severity="extreme", advice="现在应做：立即撤离。")
    html = await page(client, f"/incidents/{iid}")
    assert "一级 · 红色预警 · 进行中" in html and "现在应做：立即撤离。</span>" in html
    await change(client, editor, iid, status="resolved")
    html = await page(client, f"/incidents/{iid}")
    assert "已结束" in html and 'class="nowdo"' not in html
    assert re.search(r'id="over" class="over">本事件已于 \S+ 结束', html)
    assert "<dt>级别</dt><dd>一级 · 红色预警</dd>" in html  # the change, in place
    atom = await (await client.get(f"/incidents/{iid}/feed.atom")).text()
    assert "<title>状态 #2：预警级别调整为一级 · 红色预警。现在应做：立即撤离。</title>" in atom


async def test_corrections_travel(client: TestClient, editor: Any) -> None:
    """The corrected entry's title, description, share preview, feed item and search hit say so."""
    incident = await create_incident(client, editor, title="崂山区山洪")
    iid = incident["id"]
    await post_entry(client, editor, iid, body="山洪已造成3人死亡。", figures={"deaths": 3})
    await post_entry(client, editor, iid, kind="correction", corrects=1,
                     body="更正：经核实死亡2人。", figures={"deaths": 2})  # fmt: skip
    html = await page(client, f"/incidents/{iid}/entries/1")
    assert "<title>【已更正】山洪已造成3人死亡。 · 崂山区山洪</title>" in html
    assert 'name="description" content="本条已更正，见第 2 条。 山洪已造成3人死亡。"' in html
    assert 'property="og:description" content="本条已更正，见第 2 条。' in html
    assert 'property="og:title" content="【已更正】崂山区山洪' in html
    assert f'href="/incidents/{iid}/entries/2">查看更正 #2</a>' in html
    atom = await (await client.get(f"/incidents/{iid}/feed.atom")).text()
    assert "<title>【已更正】更新 #1：山洪已造成3人死亡。</title>" in atom
    assert f'本条已更正，见 &lt;a href="http://example.test/incidents/{iid}/entries/2"' in atom
    feed = await (await client.get(f"/incidents/{iid}/feed.json")).json()
    old = next(item for item in feed["items"] if item["url"].endswith("/entries/1"))
    assert old["title"].startswith("【已更正】") and "本条已更正" in old["content_html"]
    hits = (await (await client.get("/api/search", params={"q": "死亡"})).json())["results"]
    assert {h["seq"]: h["corrected_by"] for h in hits} == {1: [2], 2: []}
    found = await page(client, "/search?q=3人死亡")
    assert f'<a href="/incidents/{iid}/entries/2">查看更正 #2</a>' in found


async def test_redaction_notices_are_for_people(
    client: TestClient, editor: Any, admin: Any
) -> None:
    """Beijing time in the page's language; the title and feed title are not the notice."""
    incident = await create_incident(client, editor, title="崂山区山洪")
    iid = incident["id"]
    await post_entry(client, editor, iid, body="联系人张某某，电话见附件。")
    redacted = await client.post(
        f"/api/incidents/{iid}/entries/1/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "个人信息"},
        headers=admin,
    )
    at = (await redacted.json())["posted_at"]
    zh = await page(client, f"/incidents/{iid}/entries/1")
    assert "（北京时间）由应急管理局依据「政府信息公开条例第十五条」删除。" in zh
    assert at[:16] not in zh and "Withheld" not in zh
    assert "<title>内容已删除 · 崂山区山洪</title>" in zh
    en = await page(client, f"/incidents/{iid}/entries/1?lang=en")
    assert "(Beijing time) by 应急管理局 under: 政府信息公开条例第十五条." in en
    assert "<title>Withheld · 崂山区山洪</title>" in en
    rss = await (await client.get(f"/incidents/{iid}/feed.rss")).text()
    assert "<title>更新 #1：内容已删除</title>" in rss
    assert "张某某" not in rss + zh + en


async def test_english_pages_mark_chinese_content(client: TestClient, editor: Any) -> None:
    """With ?lang=en, officials' Chinese text carries lang="zh-CN"; custom figures get words."""
    incident = await create_incident(client, editor, **LEAK)
    iid = incident["id"]
    await post_entry(client, editor, iid, body="停电区域扩大。", figures={"x-power-outage": 1200})
    en = await page(client, f"/incidents/{iid}?lang=en")
    assert '<h1 lang="zh-CN">李沧区化工厂氨气泄漏</h1>' in en
    assert '<div class="body" lang="zh-CN"><p>停电区域扩大。</p>' in en
    assert 'class="nowdo" lang="zh-CN">' in en
    assert ">power outage<" in en and "x-power-outage<" not in en
    zh = await page(client, f"/incidents/{iid}")
    assert 'lang="zh-CN">李沧区' not in zh  # the page's own language needs no mark
    assert '<span class="lbl" lang="en">power outage</span>' in zh


async def test_custom_figures_get_the_sites_labels(settings: Settings) -> None:
    """BROADCASTER_FIGURE_LABELS names custom figures in both languages."""
    labelled = settings.with_(figure_labels={"x-power-outage": ("停电户数", "Homes without power")})
    async with TestClient(TestServer(create_app(labelled), host="127.0.0.1", port=0)) as client:
        from conftest import bearer, make_token

        editor = bearer(await make_token(client, "editor"))
        incident = await create_incident(client, editor)
        await post_entry(client, editor, incident["id"], figures={"x-power-outage": 1200})
        zh = await page(client, f"/incidents/{incident['id']}")
        en = await page(client, f"/incidents/{incident['id']}?lang=en")
    assert '<span class="lbl">停电户数</span>' in zh
    assert '<span class="lbl">Homes without power</span>' in en


async def test_editors_pin_key_events(client: TestClient, editor: Any) -> None:
    """Pinned entries lead the key events in the editors' order; long lines end with an ellipsis."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    long = "沙子口街道南窑村、东麦窑村沿河低洼处积水深度超过一米，" * 2 + "请居民前往避难场所。"
    await post_entry(client, editor, iid, body=long)
    await post_entry(client, editor, iid, body="救援电话 0532-88889999。")
    await post_entry(client, editor, iid, body="道路抢通。", figures={"evacuated": 300})
    await change(client, editor, iid, pinned=[2])
    html = await page(client, f"/incidents/{iid}")
    keys = re.search(r'<ul id="keys">(.*?)</ul>', html, re.S)
    assert keys is not None
    items = re.findall(r'<li data-seq="(\d+)">(.*?)</li>', keys.group(1), re.S)
    assert [seq for seq, _ in items] == ["2", "3", "1"]  # the pinning itself is no key event
    assert '<span class="pin">置顶</span>' in items[0][1]
    first = dict(items)["1"]
    assert "…</span>" in first and long[:20] in first and long not in first
    assert json.loads(re.search(r'id="live-config">(.*?)</script>', html).group(1))["pinned"] == [2]


async def test_questions_without_javascript(client: TestClient, editor: Any) -> None:
    """The live page's form asks a question with a plain POST; answers are gathered on the page."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid)
    html = await page(client, f"/incidents/{iid}")
    assert f'<form class="ask" method="post" action="/incidents/{iid}/questions">' in html
    asked = await client.post(
        f"/incidents/{iid}/questions",
        data={"text": "东麦窑村的老人由谁负责转移？"},
        headers=HTML,
        allow_redirects=False,
    )
    assert (asked.status, asked.headers["Location"]) == (
        303,
        f"/incidents/{iid}?asked=1#ask",
    )
    assert "已收到您的问题" in await page(client, f"/incidents/{iid}?asked=1")
    pending = await (await client.get(f"/api/incidents/{iid}/questions", headers=editor)).json()
    question = pending["questions"][0]
    await client.post(
        f"/api/incidents/{iid}/questions/{question['id']}/answer",
        json={"body": "由社区网格员逐户负责。"},
        headers=editor,
    )
    html = await page(client, f"/incidents/{iid}")
    answers = re.search(r'<ul id="answers" class="answers">(.*?)</ul>', html, re.S)
    assert answers is not None and "东麦窑村的老人由谁负责转移？" in answers.group(1)
    assert "查看答复 #2" in answers.group(1)
    bad = await client.post(
        f"/incidents/{iid}/questions", data={"text": "我的电话 13812345678 请回电"}, headers=HTML
    )
    text = await bad.text()
    assert bad.status == 422 and "个人信息" in text and "13812345678 请回电</textarea>" in text


async def test_a_mangled_link_gets_a_useful_404(client: TestClient, editor: Any) -> None:
    """A cut SMS link shows what was asked, the active incidents and a search box."""
    incident = await create_incident(client, editor, title="崂山区山洪")
    for path in (f"/incidents/{incident['id']}/entri", f"/incidents/{incident['id'][:-2]}"):
        response = await client.get(path, headers=HTML)
        html = await response.text()
        assert response.status == 404 and "链接可能不完整" in html, path
        assert f'href="/incidents/{incident["id"]}"' in html and 'action="/search"' in html
    api = await client.get("/no/such/path", headers={"Accept": "application/json"})
    assert api.status == 404 and (await api.json())["error"] == "not_found"
