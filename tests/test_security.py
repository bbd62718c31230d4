"""Test the service's defences: token guessing, revocation, CORS, page headers, limits, SSRF."""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import socket
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from serve_process import ServeProcess, cli
from test_ssrf import FixedResolver

from broadcaster.app import create_app
from broadcaster.auth import tokens as auth
from broadcaster.auth.tokens import FAILED_LIMIT, TOKENS, FailedLogins
from broadcaster.settings import Settings
from channels.webhooks.ssrf import Guard, Refused, check_registration

WRONG = {"Authorization": "Bearer bct_guessing-is-slowed-down"}
NEW_INCIDENT = {"title": "洪水", "severity": "severe"}


# -- token guessing ---------------------------------------------------------------------------


async def test_failed_tokens_slow_then_lock_only_the_failing_client(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Wrong tokens pause the address after SLOW_LIMIT and lock it after FAILED_LIMIT; a valid
    token from that same address is accepted all along."""
    clock = [1000.0]
    tokens = client.app[TOKENS]
    tokens.failures.clock = tokens.slow.clock = lambda: clock[0]

    async def attempt(headers: dict[str, str]) -> Any:
        return await client.post("/api/incidents", json=NEW_INCIDENT, headers=headers)

    for n in range(FAILED_LIMIT):
        if n and n % auth.SLOW_LIMIT == 0:
            paused = await attempt(WRONG)
            assert paused.status == 429, n
            assert (await paused.json())["error"] == "too_many_failed_logins"
            assert 0 < int(paused.headers["Retry-After"]) <= auth.SLOW_WINDOW
            assert (await attempt(editor)).status == 201, "a valid token is never refused"
            clock[0] += auth.SLOW_WINDOW
        assert (await attempt(WRONG)).status == 401, n
    locked = await attempt(WRONG)
    assert locked.status == 429
    assert auth.SLOW_WINDOW < int(locked.headers["Retry-After"]) <= auth.FAILED_WINDOW
    assert (await attempt(editor)).status == 201, "a valid token is never refused"
    assert (await client.get("/api/incidents")).status == 200, "reading stays public"
    clock[0] += auth.FAILED_WINDOW + 1
    assert (await attempt(WRONG)).status == 401


def test_the_limit_is_per_address_and_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """One address over the limit does not block another; old addresses are forgotten."""
    monkeypatch.setattr(auth, "FAILED_ADDRESSES", 50)
    failures = FailedLogins(limit=3, window=60, clock=lambda: 5.0)
    for _ in range(3):
        failures.failed("198.51.100.7")
    assert failures.retry_after("198.51.100.7") == 60
    assert failures.retry_after("198.51.100.8") == 0
    for n in range(500):
        failures.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(failures._failures) == 50


async def test_token_lookup_compares_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A found token's hash is compared with hmac.compare_digest, never with ==."""
    token = await make_token(client, "editor")
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert await client.app[TOKENS].lookup(token) is not None
    assert calls == [(auth.hash_token(token), auth.hash_token(token))]


# -- revocation -------------------------------------------------------------------------------


async def test_a_revoked_token_stops_working_at_once(
    client: TestClient, admin: dict[str, str]
) -> None:
    """DELETE /api/tokens/{id} revokes; the very next request with the token answers 401."""
    token_id, token = await client.app[TOKENS].create("离职编辑", "应急管理局", "editor")
    assert (await client.post("/api/incidents", json=NEW_INCIDENT, headers=bearer(token))).ok
    response = await client.delete(f"/api/tokens/{token_id}", headers=admin)
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["active"]) == (token_id, False) and body["revoked_at"]
    response = await client.post("/api/incidents", json=NEW_INCIDENT, headers=bearer(token))
    assert (response.status, (await response.json())["error"]) == (401, "invalid_token")
    again = await client.delete(f"/api/tokens/{token_id}", headers=admin)
    assert (again.status, (await again.json())["error"]) == (409, "token_already_revoked")
    audit = await (await client.get("/api/audit?action=token.revoke", headers=admin)).json()
    assert [r["target"] for r in audit["audit"]] == [f"token/{token_id}"]


async def test_token_list_shows_no_secret_and_needs_admin(
    client: TestClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    """GET /api/tokens lists owners and roles, never a token or its hash; editors get 403."""
    response = await client.get("/api/tokens", headers=admin)
    text = await response.text()
    assert response.status == 200
    assert {t["role"] for t in json.loads(text)["tokens"]} == {"admin", "editor"}
    assert "bct_" not in text and "hash" not in text
    assert not re.search(r"[0-9a-f]{64}", text)
    assert (await client.get("/api/tokens", headers=editor)).status == 403


async def test_the_last_admin_token_cannot_be_revoked_over_http(client: TestClient) -> None:
    """Revoking the only active admin token answers 409, unknown ids 404."""
    token_id, token = await client.app[TOKENS].create("管理员", "应急管理局", "admin")
    response = await client.delete(f"/api/tokens/{token_id}", headers=bearer(token))
    assert (response.status, (await response.json())["error"]) == (409, "last_admin_token")
    for raw in ("999", "²", "1e3"):
        response = await client.delete(f"/api/tokens/{raw}", headers=bearer(token))
        assert (response.status, (await response.json())["error"]) == (404, "token_not_found")


@pytest.mark.slow
def test_token_revoke_command(tmp_path: Path) -> None:
    """`broadcaster token revoke ID` revokes; `token list` shows it revoked; unknown ids exit 1."""
    data = tmp_path / "data"
    created = cli("token", "create", "--name", "值班", "--department", "局", "--role", "editor",
                  data_dir=data)  # fmt: skip
    assert created.returncode == 0, created.stderr
    listed = cli("token", "list", data_dir=data)
    assert re.search(r"^1\teditor\t值班\t局\tactive$", listed.stdout, re.M), listed.stdout
    revoked = cli("token", "revoke", "1", data_dir=data)
    assert revoked.returncode == 0 and "revoked token 1" in revoked.stdout, revoked.stderr
    assert "\trevoked " in cli("token", "list", data_dir=data).stdout
    assert cli("token", "revoke", "1", data_dir=data).returncode == 1
    assert cli("token", "revoke", "42", data_dir=data).returncode == 1


# -- CORS, headers and who may read what ------------------------------------------------------

PUBLIC_READS = [
    "/api/incidents",
    "/api/incidents/{id}",
    "/api/incidents/{id}/entries",
    "/api/incidents/{id}/entries/1",
    "/api/incidents/{id}/checkpoint",
    "/api/incidents/{id}/figures",
    "/api/incidents/{id}/questions",
    "/api/incidents/{id}/metrics",
    "/api/search?q=水位",
    "/api/openapi.json",
    "/.well-known/broadcaster-keys.json",
    "/feed.atom",
    "/feed.json",
    "/incidents/{id}/feed.rss",
    "/incidents/{id}/cap.xml",
    "/incidents/{id}/entries/1/cap.xml",
    "/api/incidents/nope",
]
NOT_CROSS_ORIGIN = [
    "/",
    "/incidents/{id}",
    "/incidents/{id}/entries/1",
    "/console",
    "/search?q=水位",
    "/healthz",
    "/metrics",
    "/api/audit",
    "/api/tokens",
    "/api/drafts",
    "/api/webhooks",
    "/api/incidents/{id}/sms",
]
ADMIN_ONLY = [
    "/metrics",
    "/api/audit",
    "/api/tokens",
    "/api/webhooks",
    "/api/webhooks/1",
    "/api/webhooks/1/deliveries",
    "/api/incidents/{id}/sms",
]
PAGES = [
    "/",
    "/?lang=en",
    "/incidents/{id}",
    "/incidents/{id}?lang=en",
    "/incidents/{id}/entries/1",
    "/console",
    "/search?q=水位",
    "/incidents/nope",
]
BROWSER = {"Accept": "text/html,application/xhtml+xml", "Origin": "https://news.example"}


@pytest.fixture
async def incident(client: TestClient, editor: dict[str, str]) -> str:
    """An incident with one entry."""
    found = await create_incident(client, editor)
    await post_entry(client, editor, found["id"])
    return str(found["id"])


@pytest.mark.parametrize("path", PUBLIC_READS)
async def test_public_reads_are_readable_from_any_origin(
    client: TestClient, incident: str, path: str
) -> None:
    """GET and HEAD of the public read endpoints carry Access-Control-Allow-Origin: *."""
    for method in ("GET", "HEAD"):
        response = await client.request(method, path.format(id=incident), headers=BROWSER)
        assert response.headers.get("Access-Control-Allow-Origin") == "*", (method, path)


@pytest.mark.parametrize("path", NOT_CROSS_ORIGIN)
async def test_pages_and_staff_reads_are_not_cross_origin(
    client: TestClient, incident: str, admin: dict[str, str], path: str
) -> None:
    """Pages, operations and staff endpoints never carry Access-Control-Allow-Origin."""
    response = await client.get(path.format(id=incident), headers={**BROWSER, **admin})
    assert "Access-Control-Allow-Origin" not in response.headers, path


async def test_writes_and_preflights_get_no_cors(
    client: TestClient, incident: str, editor: dict[str, str]
) -> None:
    """A write answers without CORS headers, and a preflight for one is refused."""
    response = await client.post("/api/incidents", json=NEW_INCIDENT, headers={**BROWSER, **editor})
    assert response.status == 201
    assert "Access-Control-Allow-Origin" not in response.headers
    for path in ("/api/incidents", f"/api/incidents/{incident}/entries", "/api/tokens/1"):
        preflight = await client.options(
            path,
            headers={
                **BROWSER,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status >= 400, path
        assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]


class InlineCode(HTMLParser):
    """Find inline scripts and event-handler attributes in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
        kind = dict(attrs).get("type") or ""
        self._in_script = tag == "script" and "src" not in dict(attrs) and "json" not in kind

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append(f"inline script: {data[:60]!r}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_has_a_strict_csp_and_security_headers(
    client: TestClient, incident: str, path: str
) -> None:
    """Each page (errors too) sends a script-tight CSP and the security headers, and needs them."""
    response = await client.get(path.format(id=incident), headers=BROWSER)
    assert response.content_type == "text/html", path
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'", csp  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    parser = InlineCode()
    parser.feed(await response.text())
    assert parser.problems == [], path


async def test_every_answer_has_the_security_headers(client: TestClient, incident: str) -> None:
    """JSON answers, JSON errors and aiohttp's own 404/405 carry nosniff and DENY too."""
    for method, path in (
        ("GET", f"/api/incidents/{incident}"),
        ("GET", "/api/incidents/nope"),
        ("GET", "/no/such/route"),
        ("PUT", "/api/incidents"),
        ("POST", "/api/incidents"),
    ):
        response = await client.request(method, path)
        assert response.status < 500
        assert response.headers.get("X-Content-Type-Options") == "nosniff", (method, path)
        assert response.headers.get("X-Frame-Options") == "DENY", (method, path)


@pytest.mark.parametrize("path", ADMIN_ONLY)
async def test_admin_endpoints_are_not_public(
    client: TestClient, incident: str, editor: dict[str, str], path: str
) -> None:
    """Without a token these answer 401, with an editor's 403: never data."""
    url = path.format(id=incident)
    response = await client.get(url)
    assert (response.status, (await response.json())["error"]) == (401, "token_required"), url
    response = await client.get(url, headers=editor)
    assert (response.status, (await response.json())["error"]) == (403, "role_required"), url


async def test_metrics_are_public_only_when_configured(tmp_path: Path) -> None:
    """BROADCASTER_METRICS_PUBLIC=1 opens /metrics to scrapers without a token."""
    settings = Settings.from_env(
        {"BROADCASTER_METRICS_PUBLIC": "1"}, data_dir=tmp_path / "d", public_url="http://x.test"
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as open_:
        response = await open_.get("/metrics")
        assert response.status == 200
        assert "broadcaster_" in await response.text()


# -- request limits on the real `broadcaster serve` -------------------------------------------


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; return what came back before it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        # The server may refuse and close before all was sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real `broadcaster serve` process, with serve's aiohttp limits."""
    server = ServeProcess(tmp_path_factory.mktemp("limits") / "data").start(TIMEOUT * 3)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /api/incidents?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/incidents HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % n for n in range(500))
        + b"\r\n",
    ],
    ids=["100KB-header", "100KB-request-line", "500-headers"],
)
def test_oversized_requests_are_refused_not_crashed(serve: Any, request_bytes: bytes) -> None:
    """A 100 KB header or request line, or 500 headers: 400/431 and closed, never a 5xx."""
    answer = raw_exchange(serve.port, request_bytes)
    status_line = answer.split(b"\r\n", 1)[0]
    if answer:  # a refusal, then the connection closes (recv returned b"")
        assert re.match(rb"HTTP/1\.[01] (400|431) ", status_line), status_line
    ok = raw_exchange(serve.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), "the server stopped answering"


# -- SSRF: forms test_ssrf.py does not already cover ------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://①②⑦.0.0.1/", "url_forbidden_address"),  # IDNA folds these digits to 127
        ("http://１２７.０.０.１/", "url_forbidden_address"),
        ("http://%31%32%37.0.0.1/", "url_forbidden_address"),
        ("http://127.0.0.1./", "url_ambiguous_ip"),
        ("http://3232235521/", "url_ambiguous_ip"),  # 192.168.0.1 as one decimal
        ("http://0300.0250.0.1/", "url_ambiguous_ip"),
        ("http://0/", "url_ambiguous_ip"),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "url_forbidden_address"),
        ("http://[::ffff:169.254.169.254]/", "url_forbidden_address"),
        ("http://[::FFFF:7F00:0001]/", "url_forbidden_address"),
        ("http://[2001::7f00:1]/", "url_forbidden_address"),  # Teredo around loopback
        ("http://[fd00:ec2::254]/", "url_forbidden_address"),  # AWS metadata over IPv6
        ("http://100.100.100.200/", "url_forbidden_address"),  # Alibaba Cloud metadata
        ("http://127.0.0.1:80@hooks.example/", "url_credentials"),
        # Oracle Cloud metadata; "global" to Python 3.11's ipaddress
        ("http://192.0.0.192/", "url_forbidden_address"),
    ],
)
async def test_tricky_internal_forms_are_refused(url: str, code: str) -> None:
    """Unicode digits, percent-escapes, decimal and octal forms, wrapped IPv6: all refused."""
    with pytest.raises(Refused) as refused:
        await check_registration(Guard(), url, FixedResolver("93.184.215.14"))
    assert refused.value.code == code


# -- headers and input (issue: hardening) -----------------------------------------------------


async def test_staff_answers_are_not_stored_and_server_names_no_version(
    settings: Settings,
) -> None:
    """Anything answering a token is no-store (the webhook secret too); Server has no version;
    HSTS is sent only when the public URL is https."""
    app = create_app(
        settings.with_(public_url="https://updates.example.test", webhook_allow=("hooks.test",))
    )
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        admin = bearer(await make_token(client, "admin"))
        created = await client.post(
            "/api/webhooks", json={"url": "https://hooks.test/in"}, headers=admin
        )
        assert created.status == 201 and "secret" in await created.json()
        iid = (await create_incident(client, admin))["id"]
        staff = await client.get(f"/api/incidents/{iid}/questions", headers=admin)
        refused = await client.get("/api/webhooks")
        for response in (created, staff, refused):
            assert response.headers["Cache-Control"] == "no-store", response.url
        public = await client.get(f"/api/incidents/{iid}")
        assert public.headers.get("Cache-Control") != "no-store"
        feed = await client.get("/feed.atom", headers=admin)  # public, whoever fetches it
        assert feed.headers["Cache-Control"] == "no-cache"
        stream = await client.get(f"/api/incidents/{iid}/events")
        page = await client.get(f"/incidents/{iid}", headers={"Accept": "text/html"})
        for response in (created, public, page, await client.get("/feed.atom")):
            assert response.headers["Server"] == "broadcaster"
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert stream.headers["Server"] == "broadcaster"
        stream.close()
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as plain:
        assert "Strict-Transport-Security" not in (await plain.get("/healthz")).headers


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("body", "水位\u202e上涨"),  # right-to-left override
        ("body", "水位\u2066上涨"),  # left-to-right isolate
        ("body", "水位\ufdd0上涨"),  # noncharacter
        ("body", "水位\U0001fffe上涨"),  # noncharacter of a supplementary plane
        ("title", "山洪\u200b预警"),  # zero-width space
        ("title", "山洪\U000e0041"),  # tag character
        ("title", "山洪\u2060"),  # word joiner
        ("question", "请问\u202a什么时候通车"),
    ],
)
async def test_bidi_controls_noncharacters_and_invisible_characters_are_refused(
    client: TestClient, editor: dict[str, str], field: str, text: str
) -> None:
    """Bodies and questions refuse bidi controls and noncharacters; titles refuse every
    invisible format character too: 422 forbidden_char."""
    iid = (await create_incident(client, editor))["id"]
    if field == "title":
        response = await client.post(
            "/api/incidents", json={**NEW_INCIDENT, "title": text}, headers=editor
        )
    elif field == "question":
        response = await client.post(f"/api/incidents/{iid}/questions", json={"text": text})
    else:
        response = await client.post(
            f"/api/incidents/{iid}/entries", json={"body": text}, headers=editor
        )
    assert response.status == 422
    assert (await response.json())["error"] == "forbidden_char"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://a:99999/",
        "http://[zz]/",
        "http://\x00x/",
        "http://" + "a" * 300 + "/",
        "http://a:80:80/",
        "http://a..b/",
        "http://\udcff/",
        "http://a\\b/",
        "http://\u2100.com/",
    ],
)
async def test_an_unparseable_webhook_url_answers_422(
    client: TestClient, admin: dict[str, str], url: str
) -> None:
    """Every URL that cannot be parsed is refused with 422, never 500."""
    response = await client.post(
        "/api/webhooks",
        data=json.dumps({"url": url}).encode(),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status in (400, 422), await response.text()
    assert response.status != 500


async def test_table_alignment_needs_no_inline_style(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Aligned table cells carry a class the site's CSS styles, not a style the CSP blocks."""
    iid = (await create_incident(client, editor))["id"]
    entry = await post_entry(client, editor, iid, body="|区|人数|\n|:-|-:|\n|沙子口|120|")
    assert '<td class="align-right">120</td>' in entry["html"]
    page = await client.get(f"/incidents/{iid}/entries/1", headers={"Accept": "text/html"})
    html = await page.text()
    assert "style=" not in html and 'class="align-right"' in html


def test_the_site_css_styles_the_alignment_classes() -> None:
    """site.css gives each alignment class its text-align."""
    css = (Path(__file__).resolve().parent.parent / "static" / "site.css").read_text()
    assert ".align-center{text-align:center}" in css
    assert ".align-right{text-align:right}" in css
