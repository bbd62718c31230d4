"""The live page's verify button in Chromium: the log, the remembered checkpoint, the text shown."""

from __future__ import annotations

import base64
import json

from playwright.async_api import Browser, Route, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_live_browser import incident_with, open_live, post
from tests.log_sites import log_at


async def logged_incident(server: LiveServer) -> dict:
    """An incident whose first entry says 3400 people were moved, all of it in the log."""
    token = await server.token()
    incident = await incident_with(server, token, entries=0)
    await post(server, token, incident, body="已转移 3400人。", figures={"evacuated": 3400})
    await post(server, token, incident, body="第2次通报：水位回落。")
    await log_at(server.url, 3)
    return incident


async def test_an_honest_page_verifies_against_the_log(
    server: LiveServer, browser: Browser
) -> None:
    """Intact, checked against the log, with the shown entries compared; English on ?lang=en."""
    incident = await logged_incident(server)
    page = await open_live(browser, server, incident)
    await page.get_by_role("button", name="核验完整性").click()
    await expect(page.locator("#verify-result")).to_have_text("完整：2 条，签名有效")
    await expect(page.locator("#verify-log")).to_have_text(
        "已与透明日志 127.0.0.1:"
        + str(server.port)
        + "/log 核对（3 条）；本页显示的 2 条内容与核验数据一致。"
    )
    remembered = await page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('bc-log:'))"
    )
    assert remembered == [f"bc-log:127.0.0.1:{server.port}/log"]
    english = await browser.new_page()
    await english.goto(f"{server.url}/incidents/{incident['id']}?lang=en")
    await english.get_by_role("button", name="Verify integrity").click()
    await expect(english.locator("#verify-result")).to_have_text(
        "Intact: 2 entries, signature valid"
    )
    await expect(english.locator("#verify-log")).to_contain_text(
        "Checked against the transparency log"
    )


async def test_a_page_rewritten_in_transit_is_reported(
    server: LiveServer, browser: Browser
) -> None:
    """3400人 → 340人 in the page's HTML: the button says so, even if the API is rewritten too."""
    incident = await logged_incident(server)
    page = await browser.new_page()

    async def rewrite_page(route: Route) -> None:
        response = await route.fetch()
        text = (await response.text()).replace("3400人", "340人")
        await route.fulfill(response=response, body=text)

    await page.route(f"{server.url}/incidents/{incident['id']}", rewrite_page)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await expect(page.locator("#e1 .body")).to_contain_text("340人")
    button = page.get_by_role("button", name="核验完整性")
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text(
        "发现篡改：第 1 条 本页显示的文字与核验的内容不符"
    )

    async def rewrite_api(route: Route) -> None:  # the html the API serves, to match the page
        response = await route.fetch()
        data = await response.json()
        for entry in data["entries"]:
            entry["html"] = entry["html"].replace("3400人", "340人")
        await route.fulfill(response=response, body=json.dumps(data, ensure_ascii=False))

    await page.route(lambda url: "/entries?" in url, rewrite_api)
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text(
        "发现篡改：第 1 条 本页显示的文字与核验的内容不符"
    )


async def test_the_page_requires_consistency_with_the_checkpoint_it_saw(
    server: LiveServer, browser: Browser
) -> None:
    """A remembered larger log (rollback) or another root at the same size (fork) is reported."""
    incident = await logged_incident(server)
    page = await open_live(browser, server, incident)
    button = page.get_by_role("button", name="核验完整性")
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text("完整：2 条，签名有效")
    slot = f"bc-log:127.0.0.1:{server.port}/log"
    seen = json.loads(await page.evaluate(f"localStorage.getItem('{slot}')"))
    assert seen["size"] == 3
    bigger = {**seen, "size": seen["size"] + 5}
    await page.evaluate(f"localStorage.setItem('{slot}', {json.dumps(json.dumps(bigger))})")
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text(
        "发现篡改：透明日志比上次看到的短（回滚）"
    )
    forked = {**seen, "root": base64.b64encode(b"\x01" * 32).decode()}
    await page.evaluate(f"localStorage.setItem('{slot}', {json.dumps(json.dumps(forked))})")
    await button.click()
    await expect(page.locator("#verify-result")).to_have_text(
        "发现篡改：透明日志与上次看到的不一致（历史被改写）"
    )
