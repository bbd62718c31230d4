"""Accessibility as a test: axe-core finds no WCAG 2.2 A/AA violation on any page.

axe-core comes from the npm registry (``tests/browser/package.json``, pinned
by its lockfile; ``scripts/test`` installs it) and runs inside Debian's
chromium on every public page and in the console's states, on a phone
(390 px) and a desktop (1280 px), in light and dark mode. Set
``BROADCASTER_SHOTS=DIR`` to keep a screenshot of each state for a person to
look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import LiveServer
from tests.browser.scenes import flood

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SHOTS = os.environ.get("BROADCASTER_SHOTS")
if SHOTS:
    Path(SHOTS).mkdir(parents=True, exist_ok=True)


async def axe(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; return its violations, trimmed for reading."""
    if not await page.evaluate("!!window.axe"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})",
        TAGS,
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": [(n["target"], n["failureSummary"]) for n in v["nodes"][:5]],
        }
        for v in result["violations"]
    ]


async def check(page: Page, name: str, problems: dict[str, Any]) -> None:
    """Record axe's violations for this state (all states are reported together)."""
    found = await axe(page)
    if found:
        problems[name] = found
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


@pytest.fixture
def need_axe() -> None:
    """Skip without axe-core, except under CI (env ``CI`` set), where its absence fails."""
    if not AXE.exists():
        reason = "axe-core is not installed: npm ci --prefix tests/browser"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}. CI must run the accessibility tests.", pytrace=False)
        pytest.skip(reason)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390", "1280"])
async def test_public_pages_have_no_violations(
    server: LiveServer,
    browser: Browser,
    need_axe: None,
    viewport: dict[str, int],
    scheme: str,
) -> None:
    """Index, live page (both languages, key events, oldest first), entry pages, search, 404."""
    incident = await flood(server)
    iid = incident["id"]
    context = await browser.new_context(
        viewport=viewport,
        bypass_csp=True,
        color_scheme=scheme,  # type: ignore[arg-type]
    )
    page = await context.new_page()
    problems: dict[str, Any] = {}
    tag = f"{viewport['width']}-{scheme}"
    for name, path in (
        ("index", "/"),
        ("live", f"/incidents/{iid}"),
        ("live-en", f"/incidents/{iid}?lang=en"),
        ("live-key", f"/incidents/{iid}?key=1&order=asc"),
        ("entry-corrected", f"/incidents/{iid}/entries/1"),
        ("entry-redacted", f"/incidents/{iid}/entries/2?lang=en"),
        ("search", "/search?q=转移"),
        ("not-found", f"/incidents/{iid}/entri"),
    ):
        await page.goto(server.url + path)
        await check(page, f"{name}-{tag}", problems)
    await page.goto(f"{server.url}/incidents/{iid}")
    await page.fill("#ask-text", "我的电话 13812345678 请回电")
    await page.click(".ask button")
    await expect(page.locator(".error-summary")).to_be_visible()
    await check(page, f"ask-error-{tag}", problems)
    await context.close()
    assert problems == {}, json.dumps(problems, ensure_ascii=False, indent=1)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390", "1280"])
async def test_console_states_have_no_violations(
    server: LiveServer, browser: Browser, need_axe: None, viewport: dict[str, int]
) -> None:
    """Signed out, signed in, errors, the check before publishing, the privacy review, drafts."""
    incident = await flood(server, entries=8)
    context = await browser.new_context(viewport=viewport, bypass_csp=True)
    page = await context.new_page()
    problems: dict[str, Any] = {}
    tag = str(viewport["width"])
    await page.goto(server.url + "/console")
    await check(page, f"console-signin-{tag}", problems)
    await page.fill("#token", await server.token("reviewer"))
    await page.click("#signin-form button")
    await expect(page.locator("#work")).to_be_visible()
    await page.select_option("#incident", incident["id"])
    await check(page, f"console-work-{tag}", problems)
    await page.click("#new-form button[type=submit]")
    await expect(page.locator("#errors")).to_be_visible()
    await check(page, f"console-errors-{tag}", problems)
    await page.fill("#body", "水位持续上涨，请沿河居民立即转移。")
    await page.check("#sms")
    await page.click("#check-btn")
    await expect(page.locator("#check")).to_be_visible()
    await check(page, f"console-check-{tag}", problems)
    await page.click("#edit")
    await page.fill("#body", "联系人电话 13812345678。")
    await page.uncheck("#sms")
    await page.click("#check-btn")
    await page.click("#publish")
    await expect(page.locator("#review")).to_be_visible()
    await check(page, f"console-review-{tag}", problems)
    await context.close()
    assert problems == {}, json.dumps(problems, ensure_ascii=False, indent=1)
