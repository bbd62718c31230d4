"""Build the incident the browser tests look at: a 25-entry flood, as readers met it.

Figures (one custom), a correction, a redaction, an escalation with new advice,
pinned key events and an answered question: every kind of thing the pages show.
"""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import LiveServer

FLOOD = {
    "title": "崂山区沙子口街道山洪",
    "severity": "severe",
    "area": "崂山区沙子口街道",
    "advice": "现在应做：沿河居民立即向高处转移，不要涉水通行。",
    "summary": (
        "11月26日凌晨，崂山区沙子口街道遭遇强降雨，南窑村、东麦窑村沿河低洼处出现山洪。"
        "\n\n街道已启动应急响应，组织人员转移。"
    ),
    "update_interval_minutes": 60,
}


async def flood(server: LiveServer, entries: int = 25) -> dict[str, Any]:
    """Create the flood incident with ``entries`` entries of every kind; return the incident."""
    editor = await server.token("editor")
    admin = await server.token("admin")
    incident = await server.call("POST", "/api/incidents", editor, FLOOD)
    iid = incident["id"]
    path = f"/api/incidents/{iid}/entries"

    async def post(**body: Any) -> Any:
        return await server.call("POST", path, editor, {"body": "", **body})

    await post(body="山洪已造成3人死亡，2人失联。", figures={"deaths": 3, "missing": 2})
    await post(body="联系人张某某，家属电话见附件。")
    await server.call(
        "POST",
        f"{path}/2/redact",
        admin,
        {"basis": "政府信息公开条例第十五条", "reason": "个人信息"},
    )
    await post(kind="correction", corrects=1, body="更正：经核实死亡2人。", figures={"deaths": 2})
    asked = await server.call(
        "POST", f"/api/incidents/{iid}/questions", editor, {"text": "东麦窑村的老人由谁负责转移？"}
    )
    await server.call(
        "POST",
        f"/api/incidents/{iid}/questions/{asked['id']}/answer",
        editor,
        {"body": "由社区网格员逐户负责，请拨打 0532-88889999 联系。"},
    )
    await post(
        kind="status",
        severity="extreme",
        advice="现在应做：立即前往沙子口小学避难，不要返回家中。",
        sms=False,
    )
    n = 6
    while n < entries:
        figures = {"evacuated": 300 * n, "x-power-outage": 40 * n} if n % 4 == 0 else None
        await post(
            body=f"第{n}次通报：沙子口街道南窑村、东麦窑村沿河低洼处积水深度超过一米，"
            "街道已组织人员转移。请沿河居民立即前往避难场所，不要在河道、桥梁附近停留观望。",
            figures=figures,
        )
        n += 1
    await post(kind="status", pinned=[1, 4], sms=False)
    return incident
