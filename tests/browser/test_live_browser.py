"""Browser tests for the live page, the console and in-browser verification (real chromium)."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Browser, Page, Route, expect

from broadcaster.log.signing import Signer
from broadcaster.store import database_for
from broadcaster.store.timeline import TimelineStore
from broadcaster.timeline.model import Actor, NewEntry
from tests.browser.conftest import LiveServer

TALL = {"width": 1000, "height": 2400}


async def incident_with(server: LiveServer, token: str, entries: int = 1) -> dict[str, Any]:
    incident = await server.call(
        "POST",
        "/api/incidents",
        token,
        {"title": "崂山区沙子口街道山洪", "severity": "severe", "update_interval_minutes": 60},
    )
    for n in range(entries):
        await post(server, token, incident, body=f"第{n + 1}次通报：沿河居民请立即转移。")
    return incident


async def post(server: LiveServer, token: str, incident: dict[str, Any], **body: Any) -> Any:
    return await server.call("POST", f"/api/incidents/{incident['id']}/entries", token, body)


async def open_live(
    browser: Browser, server: LiveServer, incident: dict[str, Any], **kw: Any
) -> Page:
    page = await browser.new_page(**kw)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await page.evaluate("window.__sameDocument = true")
    return page


async def test_entry_arrives_without_reload(server: LiveServer, browser: Browser) -> None:
    """An entry, a correction and a status change posted through the API update the open page."""
    token = await server.token()
    incident = await incident_with(server, token)
    page = await open_live(browser, server, incident, viewport=TALL)
    await post(server, token, incident, body="最新：水位开始回落。", figures={"evacuated": 3400})
    await expect(page.locator("#e2 .body")).to_have_text("最新：水位开始回落。")
    await expect(page.locator("#e2")).to_be_visible()
    await expect(page.locator("#live-state")).to_have_text("1 条新动态")
    await post(server, token, incident, kind="correction", corrects=1, body="更正：时间有误。")
    await expect(page.locator("#e1 .corr a")).to_have_attribute("href", "#e3")
    await expect(page.locator("#e1")).to_have_class("entry k-update is-corrected")
    await post(server, token, incident, kind="status", status="resolved", body="险情解除。")
    await expect(page.locator("#tag")).to_have_text("二级 · 橙色预警 · 已结束")
    assert await page.evaluate("window.__sameDocument") is True


async def test_new_entries_wait_behind_a_button(server: LiveServer, browser: Browser) -> None:
    """With the timeline top out of view, new entries wait behind "N 条新动态" and a title count."""
    token = await server.token()
    incident = await incident_with(server, token, entries=8)
    page = await open_live(browser, server, incident, viewport={"width": 400, "height": 500})
    title = await page.title()
    await page.locator("#verify").scroll_into_view_if_needed()
    await post(server, token, incident, body="新的通报")
    toast = page.locator("#toast")
    await expect(toast).to_have_text("1 条新动态")
    await expect(page.locator("#e9")).to_be_hidden()
    assert await page.title() == "(1) " + title
    await toast.click()
    await expect(page.locator("#e9")).to_be_visible()
    await expect(page.locator("#e9 h3")).to_be_focused()
    assert await page.title() == title


async def test_reconnects_after_restart(server: LiveServer, browser: Browser) -> None:
    """After a server restart on the same port and data, the page catches up on what it missed."""
    token = await server.token()
    incident = await incident_with(server, token)
    page = await open_live(browser, server, incident, viewport=TALL)
    await post(server, token, incident, body="重启前的通报")
    await expect(page.locator("#e2")).to_be_visible()
    await server.stop()
    await expect(page.locator("#live-state")).to_contain_text("连接中断，正在重连（内容截至")
    store = TimelineStore(database_for(server.settings), Signer.load(server.settings.data_dir))
    await store.open()
    editor = Actor("值班编辑", "崂山区应急管理局", "editor")
    for text in ("停机期间的通报一", "停机期间的通报二"):
        await store.append(incident["id"], NewEntry(body=text), editor)
    await store.close()
    await server.start()
    await expect(page.locator("#e4 .body")).to_have_text("停机期间的通报二")
    await expect(page.locator("#e3 .body")).to_have_text("停机期间的通报一")
    await expect(page.locator("#live-state")).not_to_contain_text("连接中断")
    assert await page.locator("article#e3").count() == 1
    assert await page.evaluate("window.__sameDocument") is True


async def test_readable_without_javascript(server: LiveServer, browser: Browser) -> None:
    """With JavaScript off the timeline and its links are all there; JS-only controls hide."""
    token = await server.token()
    incident = await incident_with(server, token, entries=3)
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    for n in (1, 2, 3):
        await expect(page.locator(f"#e{n} .body")).to_contain_text(f"第{n}次通报")
    await expect(page.get_by_role("link", name="刷新")).to_be_visible()
    await expect(page.get_by_role("link", name="最早在前")).to_be_visible()
    await expect(page.locator("#verify-btn")).to_be_hidden()
    await expect(page.locator("#pause")).to_be_hidden()
    await expect(page.locator("#verify code")).to_contain_text("broadcaster verify")
    await context.close()


async def test_console_posts_to_the_live_page(server: LiveServer, browser: Browser) -> None:
    """An update written and published in the console appears on an open live page."""
    token = await server.token()
    incident = await incident_with(server, token)
    live = await open_live(browser, server, incident, viewport=TALL)
    console = await browser.new_page()
    await console.goto(f"{server.url}/console")
    await console.fill("#token", token)
    await console.get_by_role("button", name="登录").click()
    await expect(console.locator("#work")).to_be_visible()
    await expect(console.locator(f"#incident option[value='{incident['id']}']")).to_have_count(1)
    await console.select_option("#incident", incident["id"])
    await console.fill("#body", "控制台发布：**李村河**水位回落。")
    await console.get_by_role("button", name="预览并检查").click()
    await expect(console.locator("#preview strong")).to_have_text("李村河")
    await console.locator("#publish").click()
    await expect(console.locator("#done-text")).to_contain_text("已发布 #2")
    await expect(live.locator("#e2 .body")).to_have_text("控制台发布：李村河水位回落。")
    stored = await console.evaluate(
        "[sessionStorage.getItem('bc-token'), localStorage.getItem('bc-token')]"
    )
    assert stored == [token, None]


async def test_console_shows_disclosure_findings(server: LiveServer, browser: Browser) -> None:
    """A body with a mobile number gets the review panel; 自动打码 publishes it masked."""
    token = await server.token()
    incident = await incident_with(server, token)
    console = await browser.new_page()
    await console.goto(f"{server.url}/console")
    await console.fill("#token", token)
    await console.get_by_role("button", name="登录").click()
    await console.select_option("#incident", incident["id"])
    await console.fill("#body", "请联系李先生 13812345678 领取物资。")
    await console.get_by_role("button", name="预览并检查").click()
    await console.locator("#publish").click()
    await expect(console.locator("#review")).to_be_visible()
    await expect(console.locator("#findings")).to_contain_text("138****5678")
    await expect(console.locator("#findings")).not_to_contain_text("13812345678")
    await console.get_by_role("button", name="自动打码").click()
    await expect(console.locator("#done-text")).to_contain_text("已发布 #2")


async def test_verify_reports_intact_then_tampering(server: LiveServer, browser: Browser) -> None:
    """The verify button reports an intact timeline, then tampering when served data is altered."""
    token = await server.token()
    incident = await incident_with(server, token, entries=3)
    page = await open_live(browser, server, incident)
    button = page.get_by_role("button", name="核验完整性")
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text("完整：3 条，签名有效")

    async def alter(route: Route) -> None:
        response = await route.fetch()
        data = await response.json()
        data["entries"][1]["body"] = "第2次通报：沿河居民无需转移。"
        await route.fulfill(response=response, body=json.dumps(data, ensure_ascii=False))

    await page.route(lambda url: "/entries?" in url, alter)
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text(
        "发现篡改：第 2 条 正文与内容哈希不符"
    )


async def test_falls_back_to_sse(server: LiveServer, browser: Browser) -> None:
    """Where WebSocket is unavailable the page follows the timeline over Server-Sent Events."""
    token = await server.token()
    incident = await incident_with(server, token)
    page = await browser.new_page(viewport=TALL)
    await page.add_init_script("delete window.WebSocket")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await post(server, token, incident, body="经由 SSE 送达的通报")
    await expect(page.locator("#e2 .body")).to_have_text("经由 SSE 送达的通报")
    assert any("/events?after=1" in url for url in requests)
