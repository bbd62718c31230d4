"""Browser tests: the live page shows when a promised update is overdue (real chromium)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Browser, expect

from broadcaster.clock import format_ts
from tests.browser.conftest import LiveServer

OVERDUE = "已超过承诺更新时间"
OVERDUE_PATTERN = re.compile(OVERDUE + r" \d+ 分钟")


async def incident(server: LiveServer, token: str, **fields: Any) -> dict[str, Any]:
    body = {"title": "崂山区沙子口街道山洪", "severity": "severe", "update_interval_minutes": 1}
    return await server.call("POST", "/api/incidents", token, {**body, **fields})


async def test_countdown_turns_into_overdue_notice(server: LiveServer, browser: Browser) -> None:
    """With a one-minute promise the notice appears once it passes, and a new entry clears it."""
    token = await server.token()
    created = await incident(server, token)
    path = f"/api/incidents/{created['id']}/entries"
    await server.call("POST", path, token, {"body": "第1次通报：沿河居民请立即转移。"})
    page = await browser.new_page()
    await page.clock.install()  # the page's own clock: no waiting a real minute
    await page.goto(f"{server.url}/incidents/{created['id']}")
    await expect(page.locator("#due")).to_be_visible()
    await expect(page.locator("#overdue")).to_be_hidden()
    await page.clock.fast_forward("01:30")
    await expect(page.locator("#overdue")).to_be_visible()
    await expect(page.locator("#overdue")).to_contain_text(OVERDUE)
    await page.clock.set_system_time(datetime.now(UTC))
    await server.call("POST", path, token, {"body": "第2次通报：水位开始回落。"})
    await expect(page.locator("#e2")).to_be_visible()
    await expect(page.locator("#overdue")).to_be_hidden()
    await page.close()


async def test_overdue_notice_is_rendered_without_javascript(
    server: LiveServer, browser: Browser
) -> None:
    """A reader without JavaScript sees the overdue notice the API reports."""
    token = await server.token()
    started = format_ts(datetime.now(UTC) - timedelta(minutes=3))
    created = await incident(server, token, started_at=started)
    page = await browser.new_page(java_script_enabled=False)
    await page.goto(f"{server.url}/incidents/{created['id']}")
    await expect(page.locator("#overdue")).to_be_visible()
    await expect(page.locator("#overdue")).to_have_text(OVERDUE_PATTERN)
    metrics = await server.call("GET", f"/api/incidents/{created['id']}/metrics", token, None)
    assert metrics["overdue"] is True and metrics["promises_missed"] >= 2
    await page.close()
