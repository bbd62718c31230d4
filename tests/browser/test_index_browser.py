"""Browser tests for the index page's "N 个事件有新动态 · 刷新" status line (UI brief §4)."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Browser, expect

from tests.browser.conftest import LiveServer

POLL_MS = 60_000


async def incident(server: LiveServer, token: str, title: str) -> dict[str, Any]:
    created = await server.call(
        "POST", "/api/incidents", token, {"title": title, "severity": "severe"}
    )
    await post(server, token, created, "第1次通报：沿河居民请立即转移。")
    return created


async def post(server: LiveServer, token: str, inc: dict[str, Any], body: str) -> None:
    await server.call("POST", f"/api/incidents/{inc['id']}/entries", token, {"body": body})


async def test_status_line_counts_updated_incidents(server: LiveServer, browser: Browser) -> None:
    """An entry posted after load shows "1 个事件有新动态 · 刷新" (a link to the same URL) and
    nothing else on the page changes; two updated incidents count as 2, not entries."""
    token = await server.token()
    flood = await incident(server, token, "崂山区沙子口街道山洪")
    fire = await incident(server, token, "城阳区森林火情")
    page = await browser.new_page()
    await page.clock.install()
    await page.goto(server.url + "/")
    before = await page.locator("main ul.incidents").inner_html()
    status = page.get_by_role("status")
    await expect(status).to_have_count(1)
    await page.clock.run_for(POLL_MS + 1000)
    await expect(status).to_have_text("")  # nothing new yet: the line stays empty
    await post(server, token, flood, "最新：水位开始回落。")
    await post(server, token, flood, "再次提醒：勿靠近河道。")
    await page.clock.run_for(POLL_MS + 1000)
    await expect(status).to_have_text("1 个事件有新动态 · 刷新")
    await expect(status.get_by_role("link", name="刷新")).to_have_attribute("href", "/")
    assert await page.locator("main ul.incidents").inner_html() == before
    await post(server, token, fire, "火势已得到控制。")
    await page.clock.run_for(POLL_MS + 1000)
    await expect(status).to_have_text("2 个事件有新动态 · 刷新")


async def test_status_line_in_english(server: LiveServer, browser: Browser) -> None:
    """With ?lang=en the line reads "1 incident has new updates · Refresh", linking to ?lang=en."""
    token = await server.token()
    flood = await incident(server, token, "崂山区沙子口街道山洪")
    page = await browser.new_page()
    await page.clock.install()
    await page.goto(server.url + "/?lang=en")
    await post(server, token, flood, "最新：水位开始回落。")
    await page.clock.run_for(POLL_MS + 1000)
    status = page.get_by_role("status")
    await expect(status).to_have_text("1 incident has new updates · Refresh")
    link = status.get_by_role("link", name="Refresh")
    await expect(link).to_have_attribute("href", "/?lang=en")


async def test_index_without_javascript_has_no_status_line(server: LiveServer) -> None:
    """The server-rendered index carries no status line: only the script adds it."""
    token = await server.token()
    flood = await incident(server, token, "崂山区沙子口街道山洪")
    async with aiohttp.ClientSession() as session, session.get(server.url + "/") as response:
        html = await response.text()
    assert flood["title"] in html  # the incident is listed, so index.js would watch it
    assert 'role="status"' not in html
    assert 'id="index-config"' in html and "/index.js" in html
