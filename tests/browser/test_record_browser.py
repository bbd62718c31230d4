"""The live page and console in Chromium after issue #13: each test guards one reported problem."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from tests.browser.conftest import LiveServer
from tests.browser.scenes import flood

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


async def post(server: LiveServer, incident: dict[str, Any], **body: Any) -> Any:
    token = await server.token()
    path = f"/api/incidents/{incident['id']}/entries"
    return await server.call("POST", path, token, {"body": "", **body})


async def test_new_updates_are_announced_where_a_phone_reader_is(
    server: LiveServer, browser: Browser
) -> None:
    """At the top of the page on a phone, "N 条新动态" is on screen, not 2,000 px down."""
    incident = await flood(server)
    page = await browser.new_page(viewport=PHONE)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    timeline = await page.locator("#timeline").bounding_box()
    assert timeline is not None and timeline["y"] > PHONE["height"]  # the reader is above it
    await post(server, incident, body="最新：水位开始回落。")
    toast = page.locator("#toast")
    await expect(toast).to_have_text("1 条新动态")
    box = await toast.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
    assert await page.title() == "(1) 崂山区沙子口街道山洪 · 突发事件信息发布"
    await toast.click()
    await expect(page.locator("#e27 h3")).to_be_focused()


async def test_the_header_stays_true(server: LiveServer, browser: Browser) -> None:
    """A new update moves "最后更新" and its relative time together; a level shows at once."""
    incident = await flood(server, entries=8)
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await page.evaluate(
        "document.querySelector('#last').dateTime = '2020-01-01T00:00:00+08:00';"
        "document.querySelector('#last + .rel').textContent = '（5分钟前）'"
    )
    await post(server, incident, body="水位回落。")
    await expect(page.locator("#last + .rel")).to_have_text("（刚刚）")
    await post(server, incident, kind="status", severity="moderate", advice="现在应做：留意通知。",
               sms=False)  # fmt: skip
    await expect(page.locator("#tag")).to_have_text("三级 · 黄色预警 · 进行中")
    await expect(page.locator("#tag")).to_have_class("sev sev-moderate")
    await expect(page.locator("#nowdo")).to_have_text("现在应做：留意通知。")
    await post(server, incident, kind="status", status="resolved", sms=False)
    await expect(page.locator("#tag")).to_have_text("三级 · 黄色预警 · 已结束")
    await expect(page.locator("#nowdo")).to_be_hidden()
    await expect(page.locator("#over")).to_contain_text("本事件已于")
    await page.reload()
    await expect(page.locator("#nowdo")).to_have_count(0)  # no advice once it is over
    await expect(page.locator("#over")).to_be_visible()


async def test_key_events_follow_the_editors(server: LiveServer, browser: Browser) -> None:
    """Pinned entries lead the key events, live; a new key event joins below them."""
    incident = await flood(server, entries=8)
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    first = page.locator("#keys li").first
    await expect(first).to_have_attribute("data-seq", "1")
    await expect(first.locator(".pin")).to_have_text("置顶")
    await post(server, incident, kind="status", pinned=[7], sms=False)
    await expect(first).to_have_attribute("data-seq", "7")
    await expect(page.locator("#keys .pin")).to_have_count(1)
    await post(server, incident, body="转移人数更新。", figures={"evacuated": 9000})
    await expect(page.locator("#keys li").nth(1)).to_have_attribute("data-seq", "11")
    line = await page.locator('#keys li[data-seq="7"]').inner_text()
    assert line.endswith("…")  # cut with an ellipsis, not mid-word silently


async def test_a_question_without_javascript(server: LiveServer, browser: Browser) -> None:
    """The form works with JavaScript off; the answer then appears in the answered questions."""
    incident = await flood(server, entries=6)
    context = await browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = await context.new_page()
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await page.fill("#ask-text", "沙子口小学还能容纳多少人？")
    await page.click(".ask button")
    await expect(page.locator("#ask .banner")).to_have_text("已收到您的问题，答复后将显示在本页。")
    await expect(page.locator("#answers li")).to_have_count(1)
    await expect(page.locator("#answers")).to_contain_text("东麦窑村的老人由谁负责转移？")
    await context.close()


async def test_the_desktop_uses_its_width(server: LiveServer, browser: Browser) -> None:
    """At 1280 px the timeline sits beside the figures, summary and key events."""
    incident = await flood(server, entries=8)
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    side = await page.locator(".side").bounding_box()
    timeline = await page.locator(".tl").bounding_box()
    assert side is not None and timeline is not None
    assert side["x"] + side["width"] <= timeline["x"]
    assert abs(side["y"] - timeline["y"]) < 5
    assert timeline["width"] <= 44 * 16  # lines stay readable (about 40 characters)
    assert side["x"] > 0.05 * DESKTOP["width"]  # the two columns sit in the middle


async def test_print_and_dark_mode(server: LiveServer, browser: Browser) -> None:
    """Printing leaves out buttons and forms; a dark system theme gets a dark page."""
    incident = await flood(server, entries=8)
    context = await browser.new_context(viewport=PHONE, color_scheme="dark")
    page = await context.new_page()
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 18, 18)"
    await page.emulate_media(media="print")
    for selector in ("#pause", ".controls", ".ask", "#verify-btn", ".entry footer"):
        assert not await page.locator(selector).first.is_visible(), selector
    await context.close()


async def test_the_console_makes_the_editor_choose_and_shows_the_real_sms(
    server: LiveServer, browser: Browser
) -> None:
    """No default level; the SMS shown is the server's, and one that would be cut is stopped."""
    incident = await flood(server, entries=6)
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(server.url + "/console")
    await page.fill("#token", await server.token())
    await page.click("#signin-form button")
    await page.select_option("#incident", incident["id"])
    await page.fill("#title", "李沧区化工厂氨气泄漏")
    await page.click("#new-form button[type=submit]")
    await expect(page.locator("#errors")).to_contain_text("请选择级别")
    assert await page.input_value("#severity") == ""
    await page.fill("#body", "沙子口街道水位超过警戒线。")
    await page.check("#sms")
    await expect(page.locator("#sms-text")).to_contain_text(
        "【应急管理局】崂山区沙子口街道山洪：沙子口街道水位超过警戒线。"
    )
    await expect(page.locator("#sms-text")).to_contain_text("回TD退订")
    await expect(page.locator("#sms-count")).to_contain_text("条短信（上限 3 条）")
    await page.fill("#body", "沙子口街道水位超过警戒线，请居民立即转移。" * 12)
    await expect(page.locator("#sms-count")).to_contain_text("超过上限 3 条")
    await page.click("#check-btn")
    await expect(page.locator("#errors")).to_contain_text("短信需要")
    await expect(page.locator("#check")).to_be_hidden()
