"""Browser tests for the console's safeguards: acknowledging findings and the review queue."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, expect

from broadcaster.auth.tokens import TOKENS
from tests.browser.conftest import LiveServer

TALL = {"width": 1000, "height": 2400}


async def person(server: LiveServer, name: str, role: str) -> str:
    """Create a token for a named person (LiveServer.token names everyone alike)."""
    assert server.app is not None
    _, token = await server.app[TOKENS].create(name, "崂山区应急管理局", role)
    return token


async def call(server: LiveServer, method: str, path: str, token: str, body: Any = None) -> Any:
    """Call the API and return (status, JSON)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def guarded_incident(server: LiveServer, token: str) -> str:
    body = {"title": "崂山区沙子口街道山洪", "severity": "severe", "require_approval": True}
    status, incident = await call(server, "POST", "/api/incidents", token, body)
    assert status == 201
    return str(incident["id"])


async def hold(server: LiveServer, token: str, incident_id: str, **body: Any) -> str:
    """Submit an entry that is held for review; return the draft id."""
    path = f"/api/incidents/{incident_id}/entries"
    status, answer = await call(server, "POST", path, token, body)
    assert status == 202, answer
    return str(answer["draft_id"])


async def console(browser: Browser, server: LiveServer, token: str) -> Page:
    page = await browser.new_page(viewport=TALL)
    await page.goto(f"{server.url}/console")
    await page.fill("#token", token)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#work")).to_be_visible()
    return page


async def test_reviewer_approves_in_the_console(server: LiveServer, browser: Browser) -> None:
    """A reviewer sees the draft with author and masked finding, approves it, and it is live."""
    editor = await person(server, "值班编辑", "editor")
    reviewer = await person(server, "审核员", "reviewer")
    incident_id = await guarded_incident(server, editor)
    draft_id = await hold(
        server, editor, incident_id, body="请联系李先生 13812345678 领取物资。", mask=True
    )
    page = await console(browser, server, reviewer)
    card = page.locator(f"#draft-{draft_id}")
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card).to_contain_text("【待审核】 崂山区沙子口街道山洪")
    await expect(card).to_contain_text("提交人：值班编辑（崂山区应急管理局）")
    await expect(card.locator(".body")).to_have_text("请联系李先生 138****5678 领取物资。")
    await expect(card.locator(".findings")).to_have_text("手机号码 138****5678：已打码")
    await card.get_by_role("button", name="批准发布").click()
    await expect(card).to_have_attribute("data-status", "approved")
    await expect(card.get_by_role("link", name="第1条")).to_have_attribute(
        "href", f"/incidents/{incident_id}/entries/1"
    )
    status, entry = await call(server, "GET", f"/api/incidents/{incident_id}/entries/1", editor)
    assert status == 200
    assert entry["author"]["name"] == "值班编辑"
    assert entry["approved_by"] == {"name": "审核员", "department": "崂山区应急管理局"}


async def test_no_approve_button_on_ones_own_draft(server: LiveServer, browser: Browser) -> None:
    """A reviewer's own draft shows why it waits, with no approve button; others' have one."""
    editor = await person(server, "值班编辑", "editor")
    reviewer = await person(server, "审核员", "reviewer")
    incident_id = await guarded_incident(server, editor)
    own = await hold(server, reviewer, incident_id, body="审核员自己写的通报。")
    other = await hold(server, editor, incident_id, body="编辑写的通报。")
    page = await console(browser, server, reviewer)
    await expect(page.locator(f"#draft-{own}")).to_contain_text("须由另一位审核人批准")
    await expect(page.locator(f"#draft-{own} button")).to_have_count(0)
    await expect(
        page.locator(f"#draft-{other}").get_by_role("button", name="批准发布")
    ).to_be_visible()
    await expect(page.locator("#draft-list article").first).to_have_id(f"draft-{own}")


async def test_return_needs_a_reason_and_the_editor_sees_it(
    server: LiveServer, browser: Browser
) -> None:
    """Returning without a reason is stopped in the page; the author then sees the reason."""
    editor = await person(server, "值班编辑", "editor")
    reviewer = await person(server, "审核员", "reviewer")
    incident_id = await guarded_incident(server, editor)
    draft_id = await hold(server, editor, incident_id, body="死亡3人，受伤12人。")
    author = await console(browser, server, editor)
    mine = author.locator(f"#draft-{draft_id}")
    await expect(mine).to_contain_text("这是您提交的草稿")
    page = await console(browser, server, reviewer)
    card = page.locator(f"#draft-{draft_id}")
    await card.get_by_role("button", name="退回").click()
    await expect(card.get_by_role("alert")).to_have_text("请填写退回理由")
    assert (await call(server, "GET", f"/api/drafts/{draft_id}", editor))[1]["status"] == "pending"
    await card.get_by_label("退回理由（必填）").fill("伤亡数字未经核实")
    await card.get_by_role("button", name="退回").click()
    await expect(card).to_have_attribute("data-status", "rejected")
    await author.get_by_role("button", name="刷新").click()
    await expect(mine).to_have_attribute("data-status", "rejected")
    await expect(mine).to_contain_text("退回：伤亡数字未经核实")
    status, head = await call(server, "GET", f"/api/incidents/{incident_id}", editor)
    assert head["head"]["seq"] == 0


async def test_console_post_is_held_and_queued(server: LiveServer, browser: Browser) -> None:
    """Publishing in the console on a guarded incident says it is held and lists the draft."""
    editor = await person(server, "值班编辑", "editor")
    incident_id = await guarded_incident(server, editor)
    page = await console(browser, server, editor)
    await page.select_option("#incident", incident_id)
    await page.fill("#body", "控制台提交：李村河水位回落。")
    await page.get_by_role("button", name="预览并检查").click()
    await page.locator("#publish").click()
    await expect(page.locator("#done-text")).to_contain_text("已提交审核")
    await expect(page.locator("#draft-list article[data-status=pending]")).to_contain_text(
        "控制台提交：李村河水位回落。"
    )


async def test_acknowledging_findings_needs_a_reason(server: LiveServer, browser: Browser) -> None:
    """确认并说明理由 asks for the reason first, then publishes as written and is audited."""
    editor = await person(server, "值班编辑", "editor")
    admin = await person(server, "管理员", "admin")
    status, incident = await call(
        server, "POST", "/api/incidents", editor, {"title": "山洪", "severity": "severe"}
    )
    page = await console(browser, server, editor)
    await page.select_option("#incident", incident["id"])
    text = "媒体垂询：xinwen@yjj.qingdao.gov.cn"
    await page.fill("#body", text)
    await page.get_by_role("button", name="预览并检查").click()
    await page.locator("#publish").click()
    await expect(page.locator("#findings")).to_contain_text("x***@yjj.qingdao.gov.cn")
    await page.locator("#ack").click()
    await expect(page.locator("#errors")).to_contain_text("请说明理由")
    await page.fill("#ack-reason", "本局新闻办公开邮箱")
    await page.locator("#ack").click()
    await expect(page.locator("#done-text")).to_contain_text("已发布 #1")
    status, entry = await call(server, "GET", f"/api/incidents/{incident['id']}/entries/1", editor)
    assert entry["body"] == text
    status, audit = await call(server, "GET", "/api/audit?action=disclosure.acknowledge", admin)
    [record] = audit["audit"]
    assert record["detail"]["reason"] == "本局新闻办公开邮箱"
    assert record["actor"]["name"] == "值班编辑"


async def test_open_live_page_drops_redacted_text(server: LiveServer, browser: Browser) -> None:
    """A reader's open live page replaces the redacted text with the notice, without reload."""
    editor = await person(server, "值班编辑", "editor")
    admin = await person(server, "管理员", "admin")
    status, incident = await call(
        server, "POST", "/api/incidents", editor, {"title": "山洪", "severity": "severe"}
    )
    path = f"/api/incidents/{incident['id']}/entries"
    assert (await call(server, "POST", path, editor, {"body": "伤者王某某已送医。"}))[0] == 201
    page = await browser.new_page(viewport=TALL)
    await page.goto(f"{server.url}/incidents/{incident['id']}")
    await page.evaluate("window.__sameDocument = true")
    await expect(page.locator("#e1 .body")).to_have_text("伤者王某某已送医。")
    status, _ = await call(
        server,
        "POST",
        f"{path}/1/redact",
        admin,
        {"basis": "政府信息公开条例第十五条", "reason": "涉及个人隐私"},
    )
    assert status == 201
    await expect(page.locator("#e1 .body")).to_contain_text("政府信息公开条例第十五条")
    await expect(page.locator("main")).not_to_contain_text("王某某")
    assert await page.evaluate("window.__sameDocument") is True
