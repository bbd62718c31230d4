"""Tests for channels.pages.serve: the server-rendered index, live page, entry page and console."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from aiohttp.test_utils import TestClient

from broadcaster.appkeys import DB
from tests.conftest import create_incident, post_entry

DATA_TYPES = ("application/ld+json", "application/json")
LONG_BODY = (
    "沙子口街道南窑村、东麦窑村沿河低洼处积水深度超过一米，街道已组织{n}批次人员转移。"
    "请沿河居民立即前往沙子口小学、东麦窑社区服务中心等避难场所，不要涉水通行，"
    "不要在河道、桥梁附近停留观望。崂山路（沙子口段）实行临时交通管制，请绕行。"
)


class Page(HTMLParser):
    """Collect what the tests check: scripts, style blocks, attributes, JSON-LD, ids."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.script_text: list[tuple[str | None, str]] = []
        self.styles: list[str] = []
        self.bad_attrs: list[str] = []
        self.ids: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.html_lang: str | None = None
        self._in: str | None = None
        self._type: str | None = None
        self._buf: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.bad_attrs.append(f"{tag}[{name}]")
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "html":
            self.html_lang = found.get("lang")
        if tag == "a":
            self.links.append(found)
        if tag in ("script", "style"):
            if tag == "script":
                self.scripts.append(found)
            self._in, self._type, self._buf = tag, found.get("type"), []

    def handle_data(self, data: str) -> None:
        if self._in:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            text = "".join(self._buf)
            if tag == "style":
                self.styles.append(text)
            else:
                self.script_text.append((self._type, text))
            self._in = None

    def json_ld(self) -> list[dict[str, Any]]:
        return [json.loads(text) for kind, text in self.script_text if kind == DATA_TYPES[0]]


async def get_html(client: TestClient, path: str, **headers: str) -> tuple[Any, str]:
    """GET ``path`` as a browser does (asking for HTML)."""
    response = await client.get(path, headers={"Accept": BROWSER_ACCEPT, **headers})
    return response, await response.text()


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_page_errors_are_json_for_non_browsers(client: TestClient) -> None:
    """A client that does not ask for HTML gets the contract's JSON error from a page."""
    response = await client.get("/incidents/no-such-thing", headers={"Accept": "*/*"})
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "not_found" and body["message"]
    response, html = await get_html(client, "/incidents/no-such-thing")
    assert response.status == 404 and response.content_type == "text/html"


async def busy_incident(client: TestClient, editor: dict, entries: int = 30) -> dict[str, Any]:
    """Create an incident with ``entries`` long entries, figures on some."""
    incident = await create_incident(
        client,
        editor,
        area="崂山区沙子口街道",
        summary="现在应做：沿河居民立即转移到高处。\n\n" + LONG_BODY.format(n=0),
        update_interval_minutes=60,
    )
    for n in range(1, entries + 1):
        fields: dict[str, Any] = {"body": LONG_BODY.format(n=n)}
        if n % 5 == 0:
            fields["figures"] = {"evacuated": 1000 * n + 400, "injured": n}
        await post_entry(client, editor, incident["id"], **fields)
    return incident


async def test_first_response_shows_the_story(client: TestClient, editor: dict) -> None:
    """The first HTML response alone has title, status, last update, figures and latest entries."""
    incident = await busy_incident(client, editor, entries=10)
    await post_entry(client, editor, incident["id"], body="最新：水位开始回落。")
    response, html = await get_html(client, f"/incidents/{incident['id']}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>崂山区沙子口街道山洪</h1>" in html
    assert "二级 · 橙色预警 · 进行中" in html
    assert "现在应做：沿河居民立即转移到高处。" in html
    assert "最后更新" in html and "下次更新预计" in html
    assert '<span class="num">10,400</span> <span class="lbl">转移</span>' in html
    assert '<polyline points="' in html  # the history chart (two reports of each figure)
    assert re.search(r'<article id="e11" class="entry k-update"', html)
    assert html.index('id="e11"') < html.index('id="e10"')  # newest first
    assert "最新：水位开始回落。" in html
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00">', html)
    assert f'href="/incidents/{incident["id"]}/feed.atom"' in html
    assert f"/incidents/{incident['id']}/cap.xml" in html
    assert f"broadcaster verify http://example.test {incident['id']}" in html
    assert "发送「订阅 " + incident["code"] + "」至 12379" in html


async def test_weight_budget(client: TestClient, editor: dict) -> None:
    """With 30 long entries the live page is ≤ 40 KB gzipped; CSS ≤ 8 KB; each JS ≤ 12 KB."""
    incident = await busy_incident(client, editor, entries=35)
    response = await client.get(f"/incidents/{incident['id']}", auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    raw = await response.read()
    html = gzip.decompress(raw).decode()
    assert html.count("<article id=") == 30
    assert len(raw) <= 40 * 1024, len(raw)
    page = Page(html)
    assert sum(len(s.encode()) for s in page.styles) <= 8 * 1024
    external = [s for s in page.scripts if s.get("src")]
    assert len(external) == 1 and "defer" in external[0]
    console = await (await client.get("/console")).text()
    scripts = re.findall(r'(?:src|data-src)="(/static/[^"]+\.js)"', html + console)
    assert len(scripts) >= 3  # live.js, verify.js (loaded on demand), console's
    for path in scripts:
        script = await client.get(path, auto_decompress=False)
        assert script.headers["Content-Encoding"] == "gzip"
        assert len(await script.read()) <= 12 * 1024, path
    for path in ("/", f"/incidents/{incident['id']}/entries/3"):
        small = await client.get(path, auto_decompress=False)
        assert len(await small.read()) <= 20 * 1024, path


async def test_csp_and_no_inline_script(client: TestClient, editor: dict) -> None:
    """Every page has the strict CSP, allows exactly its inline CSS, and runs no inline script."""
    incident = await busy_incident(client, editor, entries=2)
    paths = (
        "/",
        f"/incidents/{incident['id']}",
        f"/incidents/{incident['id']}?lang=en",
        f"/incidents/{incident['id']}/entries/1",
        "/console",
        "/incidents/no-such-thing",
    )
    for path in paths:
        response, html = await get_html(client, path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "object-src 'none'" in csp
        page = Page(html)
        assert page.html_lang in ("zh-CN", "en")
        assert page.bad_attrs == [], (path, page.bad_attrs)
        for script in page.scripts:
            assert script.get("src") or script.get("type") in DATA_TYPES, (path, script)
        for kind, text in page.script_text:
            assert kind in DATA_TYPES or not text.strip(), path
        (style,) = page.styles
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
        assert len(page.ids) == len(set(page.ids)), path


async def test_json_ld_parses(client: TestClient, editor: dict) -> None:
    """The live page has LiveBlogPosting JSON-LD (latest 10); the entry page a BlogPosting."""
    incident = await busy_incident(client, editor, entries=12)
    await post_entry(client, editor, incident["id"], body="</script><script>alert(1)</script>")
    _, html = await get_html(client, f"/incidents/{incident['id']}")
    (ld,) = Page(html).json_ld()
    assert ld["@type"] == "LiveBlogPosting" and ld["headline"] == "崂山区沙子口街道山洪"
    assert len(ld["liveBlogUpdate"]) == 10
    assert ld["liveBlogUpdate"][0]["url"].endswith("/entries/13")
    assert "</script><script>alert(1)" in ld["liveBlogUpdate"][0]["articleBody"]
    _, html = await get_html(client, f"/incidents/{incident['id']}/entries/2")
    (ld,) = Page(html).json_ld()
    assert ld["@type"] == "BlogPosting" and ld["url"].endswith("/entries/2")


async def test_cursor_paging(client: TestClient, editor: dict) -> None:
    """Pages hold 30 entries and link by seq cursor; ?with= renders the slice holding an entry."""
    incident = await busy_incident(client, editor, entries=35)
    base = f"/incidents/{incident['id']}"
    _, html = await get_html(client, base)
    seqs = [int(s) for s in re.findall(r'<article id="e(\d+)"', html)]
    assert seqs == list(range(35, 5, -1))
    assert f'href="{base}?before=6"' in html
    _, html = await get_html(client, f"{base}?before=6")
    assert [int(s) for s in re.findall(r'<article id="e(\d+)"', html)] == [5, 4, 3, 2, 1]
    _, html = await get_html(client, f"{base}?with=2")
    assert 'id="e2"' in html
    _, html = await get_html(client, f"{base}?order=asc")
    seqs = [int(s) for s in re.findall(r'<article id="e(\d+)"', html)]
    assert seqs == list(range(1, 31))
    assert f'href="{base}?order=asc&amp;after=30"' in html
    _, html = await get_html(client, f"{base}?key=1")
    key_seqs = [int(s) for s in re.findall(r'<article id="e(\d+)"', html)]
    assert key_seqs == [35, 30, 25, 20, 15, 10, 5, 1]
    response, _ = await get_html(client, f"{base}?before=abc")
    assert response.status == 400


async def test_entry_page(client: TestClient, editor: dict) -> None:
    """An entry's page has the metadata list, body, neighbours, timeline link and hashes."""
    incident = await busy_incident(client, editor, entries=3)
    entry = await (await client.get(f"/api/incidents/{incident['id']}/entries/2")).json()
    base = f"/incidents/{incident['id']}"
    response, html = await get_html(client, f"{base}/entries/2")
    assert response.status == 200 and "Cache-Control" in response.headers
    assert "<dt>序号</dt><dd>#2</dd>" in html
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 星期.+ \d\d:\d\d</time>（北京时间）", html)
    assert LONG_BODY.format(n=2) in html
    assert f'href="{base}/entries/1" rel="prev"' in html
    assert f'href="{base}/entries/3" rel="next"' in html
    assert f'href="{base}?with=2#e2"' in html
    assert entry["hash"] in html and entry["content_hash"] in html and entry["prev_hash"] in html
    assert '<meta property="og:description" content="沙子口街道南窑村' in html
    assert "<script src" not in html
    missing, _ = await get_html(client, f"{base}/entries/99")
    assert missing.status == 404


async def test_english(client: TestClient, editor: dict) -> None:
    """?lang=en renders English UI strings and keeps the language in links."""
    incident = await busy_incident(client, editor, entries=2)
    _, html = await get_html(client, f"/incidents/{incident['id']}?lang=en")
    assert '<html lang="en">' in html
    assert "Level II · Orange warning · Active" in html
    assert f'href="/incidents/{incident["id"]}/entries/2?lang=en"' in html
    assert re.search(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d|>\d\d:\d\d</time>", html)
    _, index = await get_html(client, "/?lang=en")
    assert "Active incidents" in index and f"/incidents/{incident['id']}?lang=en" in index


async def test_corrections_linked_both_ways(client: TestClient, editor: dict) -> None:
    """A corrected entry says when it was corrected and links to the correction, and back."""
    incident = await busy_incident(client, editor, entries=2)
    await post_entry(client, editor, incident["id"], kind="correction", corrects=1, body="更正说明")
    _, html = await get_html(client, f"/incidents/{incident['id']}")
    first = html[html.index('<article id="e1"') :]
    assert "is-corrected" in first[:80]
    assert re.search(r"已于 [^<]+ 更正 → <a href=\"#e3\">查看更正</a>", first)
    assert '<a href="#e1">更正 #1</a>' in html


async def test_redacted_entry_shows_notice_only(client: TestClient, editor: dict) -> None:
    """A redacted entry shows its basis in place, never the withheld text, on every page."""
    incident = await busy_incident(client, editor, entries=1)
    secret = await post_entry(client, editor, incident["id"], body="联系人张某某，住址南窑村五号")

    def redact(conn: Any) -> None:
        conn.execute("DELETE FROM contents WHERE content_hash = ?", (secret["content_hash"],))
        conn.execute(
            "INSERT INTO redactions VALUES (?, 2, 3, '政府信息公开条例第十五条',"
            " '2026-11-26T07:00:00.000Z', '应急管理局')",
            (incident["id"],),
        )

    await client.app[DB].write(redact)
    for path in (f"/incidents/{incident['id']}", f"/incidents/{incident['id']}/entries/2"):
        _, html = await get_html(client, path)
        assert "南窑村五号" not in html
        assert "政府信息公开条例第十五条" in html


async def test_index_orders_and_marks(client: TestClient, editor: dict) -> None:
    """The index lists active incidents by severity, marks overdue ones, links search and feeds."""
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    minor = await create_incident(client, editor, title="四级事件", severity="minor")
    late = await create_incident(
        client, editor, title="逾期事件", severity="moderate",
        started_at=three_hours_ago, update_interval_minutes=60,
    )  # fmt: skip
    top = await create_incident(client, editor, title="一级事件", severity="extreme")
    await post_entry(client, editor, minor["id"])
    _, html = await get_html(client, "/")
    assert html.index("一级事件") < html.index("逾期事件") < html.index("四级事件")
    assert "一级 · 红色预警 · 进行中" in html and "四级 · 蓝色预警" in html
    assert re.search(r"已超过承诺更新时间 1[12]\d 分钟", html)
    assert '<form class="search" action="/search" method="get"' in html
    assert 'href="/feed.atom"' in html and 'href="/feed.json"' in html
    assert 'class="site-alert sev-extreme"' in html
    _, own = await get_html(client, f"/incidents/{top['id']}")
    assert 'class="site-alert' not in own  # the alert is for *another* extreme incident
    _, other = await get_html(client, f"/incidents/{late['id']}")
    assert 'class="site-alert sev-extreme"' in other and "已超过承诺更新时间" in other


async def test_page_etag_304(client: TestClient, editor: dict) -> None:
    """Pages answer 304 to their own ETag and send Cache-Control: no-cache."""
    incident = await busy_incident(client, editor, entries=1)
    path = f"/incidents/{incident['id']}/entries/1"
    first = await client.get(path)
    assert first.headers["Cache-Control"] == "no-cache"
    again = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304


async def test_static_files_are_versioned(client: TestClient) -> None:
    """Static files live under their content hash, cached for a year; an old hash is no-cache."""
    _, html = await get_html(client, "/console")
    (src,) = re.findall(r'<script src="(/static/[0-9a-f]+/console\.js)" defer>', html)
    response = await client.get(src)
    assert response.status == 200 and "immutable" in response.headers["Cache-Control"]
    assert response.headers["Content-Type"].startswith("text/javascript")
    stale = await client.get(src.replace("/static/", "/static/0").replace("/console", "/console"))
    assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/static/abc/nope.js")).status == 404


async def test_preview_matches_publication(client: TestClient, editor: dict) -> None:
    """POST /api/preview needs an editor and returns exactly the HTML publication produces."""
    body = "**注意**\r\n\r\n[链接](javascript:alert(1)) <script>x</script> e\u0301"
    assert (await client.post("/api/preview", json={"body": body})).status == 401
    response = await client.post("/api/preview", json={"body": body}, headers=editor)
    assert response.status == 200
    preview = (await response.json())["html"]
    incident = await create_incident(client, editor)
    entry = await post_entry(client, editor, incident["id"], body=body)
    assert preview == entry["html"]
    bad = await client.post("/api/preview", json={"text": "x"}, headers=editor)
    assert bad.status == 422


async def test_console_keeps_token_out_of_storage(client: TestClient) -> None:
    """The console uses sessionStorage for the token, never localStorage, and has its mounts."""
    _, html = await get_html(client, "/console")
    assert 'id="drafts" data-mount="drafts"' in html and "待审核" in html
    (src,) = re.findall(r'<script src="(/static/[^"]+/console\.js)" defer>', html)
    script = await (await client.get(src)).text()
    assert "sessionStorage" in script and "localStorage" not in script
    assert "Idempotency-Key" in script
