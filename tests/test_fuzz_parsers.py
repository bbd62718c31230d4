"""Throw arbitrary input at every parser of outside input: each refuses cleanly, none crashes.

The markdown renderer must never emit active content (a script, an event
handler attribute, a ``javascript:``/``data:``/``vbscript:`` link) whatever
the entry's text, including entity-obfuscated and whitespace-split schemes.
The JSON, SMS, DLR and timestamp parsers either return a value or raise their
one documented error. Query parameters on the API and pages never cause a
5xx, and API errors stay JSON with a code.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TIMEOUT
from faults.servers import ThreadedServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broadcaster.clock import format_ts, parse_ts
from broadcaster.errors import BadRequest
from broadcaster.settings import Settings
from broadcaster.timeline.markdown import ALLOWED_SCHEMES, render
from broadcaster.web.jsonbody import parse_json
from channels.sms.commands import Command, parse
from channels.sms.kannel import DLR_TYPES, parse_dlr

pytestmark = pytest.mark.slow

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
# Derandomized: the same examples on every run, so CI is never red by chance.
OVER_HTTP = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)

# Pieces an attacker would combine; hypothesis splices them into random text.
HOSTILE = [
    "<script>alert(1)</script>", "<SCRIPT SRC=//x.test/x.js>", "<scr<script>ipt>",
    "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>", "<a href=x onclick=y>z</a>",
    "<iframe src=javascript:alert(1)>", "<body onload=x>", "<div style=x:expression(y)>",
    "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](jav&#x61;script:alert(1))",
    "[x](&#106;avascript:alert(1))", "[x](java\tscript:alert(1))", "[x](java%0ascript:x)",
    "[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](vbscript:msgbox(1))", "[x]( javascript:x)",
    "[x](<javascript:x>)", "<javascript:alert(1)>", "<vbscript:x>", "[x][r]\n\n[r]: javascript:x",
    "[x](\x01javascript:x)", "[x](javascript&colon;x)", "[x](&#x6A;&#x61;vascript:x)",
    "![i](javascript:x)", "<a href='javascript:x'>a</a>", "`<script>`", "```\n<script>\n```",
    "[x](https://ok.test/ \"t\" onmouseover=x)", "**[x](data:x)**", "> [x](vbscript:x)",
    "&lt;script&gt;", "\u202e<script>", "[x](mailto:a@b.test)", "[x](https://例子.测试/)",
]  # fmt: skip
markdown_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)), max_size=8).map(
    "".join
)


class Tags(HTMLParser):
    """Collect every start tag with its attributes (as a browser would read them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def url_scheme(url: str) -> str | None:
    """Return the scheme a browser would see: entities decoded, controls and blanks dropped."""
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(url))
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", cleaned)
    return match.group(1).lower() if match else None


@FAST
@given(markdown_text)
def test_rendered_markdown_never_carries_active_content(body: str) -> None:
    """No script or event handler, and only http(s)/mailto links, come out of any markdown."""
    out = render(body)
    assert "<script" not in out.lower()
    parser = Tags()
    parser.feed(out)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in ("script", "iframe", "object", "embed", "svg", "img", "style"), out
        for name, value in attrs:
            assert not name.startswith("on"), out
            assert name != "style" or "expression" not in (value or "").lower(), out
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                scheme = url_scheme(value or "")
                assert scheme is None or scheme in ALLOWED_SCHEMES, (scheme, out)


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_json_parser_returns_a_value_or_a_bad_request(raw: bytes) -> None:
    """Any bytes parse to a value or raise BadRequest (400 with a code), nothing else."""
    try:
        parse_json(raw)
    except BadRequest as exc:
        assert exc.code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@FAST
@given(json_values)
def test_json_parser_round_trips_valid_documents(value: object) -> None:
    """Every JSON document our clients would send parses back to the same value."""
    assert parse_json(json.dumps(value, ensure_ascii=False).encode("utf-8")) == value


@FAST
@given(st.text(max_size=80))
def test_sms_commands_parse_any_text(text: str) -> None:
    """Any inbound SMS text yields subscribe, unsubscribe or help; a code is plain ASCII."""
    command = parse(text)
    assert isinstance(command, Command)
    assert command.action in ("subscribe", "unsubscribe", "help")
    assert command.code is None or re.fullmatch(r"[A-Z0-9]{1,16}", command.code)


@FAST
@given(st.dictionaries(st.sampled_from(["message_id", "type", "x", ""]), st.text(max_size=20)))
def test_dlr_parser_returns_a_report_or_value_error(query: dict[str, str]) -> None:
    """Any DLR query string gives (message_id, known type) or ValueError."""
    try:
        message_id, dlr_type = parse_dlr(query)
    except ValueError:
        return
    assert dlr_type in DLR_TYPES
    assert message_id == query["message_id"]


@FAST
@given(st.text(max_size=40) | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
def test_timestamps_parse_or_raise_value_error(text: str) -> None:
    """Any text parses to an aware UTC time, which formats and parses back, or ValueError."""
    try:
        moment = parse_ts(text)
    except ValueError:
        return
    assert parse_ts(format_ts(moment)) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )


# -- query parameters over HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """The whole app on a real port with one incident of three entries."""
    data: Path = tmp_path_factory.mktemp("params") / "data"
    config = Settings.from_env({}, data_dir=data, public_url="http://x.test")
    running = ThreadedServer(config, TIMEOUT).start()
    incident = running.post("/api/incidents", {"title": "山洪", "severity": "severe"})
    for n in range(3):
        running.post(f"/api/incidents/{incident['id']}/entries", {"body": f"第{n}次通报"})
    running.incident = incident["id"]  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


PATHS = [
    "/api/incidents",
    "/api/incidents/{id}",
    "/api/incidents/{id}/entries",
    "/api/incidents/{id}/events",
    "/api/incidents/{id}/questions",
    "/api/incidents/{id}/figures",
    "/api/search",
    "/",
    "/incidents/{id}",
    "/incidents/{id}/entries/2",
    "/incidents/{id}/feed.atom",
    "/feed.json",
    "/search",
    "/console",
]
NAMES = ["after", "limit", "before", "lang", "q", "incident", "order"]
# Values as they travel: %-escapes (also of invalid UTF-8), huge and signed numbers.
raw_values = st.one_of(
    st.text(max_size=30).map(lambda t: urllib.parse.quote(t, safe="")),
    st.sampled_from(
        ["%FF", "%C0%AF", "%00", "-1", "1e9", "99999999999999999999", "0x10", "%", "en", "zh-CN"]
    ),
    st.integers().map(str),
)
queries = st.lists(st.tuples(st.sampled_from(NAMES), raw_values), max_size=4).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)


@OVER_HTTP
@given(path=st.sampled_from(PATHS), query=queries)
@example(path="/api/search", query="q=%22%22%22*%20OR%20NEAR(")
@example(path="/api/incidents/{id}/entries", query="after=-1&limit=99999999999999999999")
@example(path="/incidents/{id}", query="before=%FF&lang=%C0%AF")
def test_query_parameters_never_cause_a_server_error(
    server: ThreadedServer, path: str, query: str
) -> None:
    """Any query string on the API and the pages answers below 500; API errors are JSON."""
    target = path.format(id=server.incident) + "?" + query  # type: ignore[attr-defined]
    status, headers, body = server.get(target)
    assert status < 500, (target, status, body[:300])
    if status >= 400 and path.startswith("/api/"):
        assert headers["content-type"].startswith("application/json"), (target, status)
        assert json.loads(body)["error"], (target, body)


@OVER_HTTP
@given(value=st.text(max_size=20).filter(lambda v: "\r" not in v and "\n" not in v))
def test_last_event_id_never_causes_a_server_error(server: ThreadedServer, value: str) -> None:
    """Any Last-Event-ID header on the event stream answers 200 or 400, never a 5xx.

    Control characters are refused by aiohttp's HTTP parser before any handler
    runs (a plain-text 400); everything else reaching the handler gets its code.
    """
    target = f"/api/incidents/{server.incident}/events"  # type: ignore[attr-defined]
    status, headers, body = server.request(
        "GET", target, headers={"Last-Event-ID": value.encode("utf-8").decode("latin-1")}
    )
    assert status in (200, 400), (status, body[:200])
    if status == 400 and headers.get("content-type", "").startswith("application/json"):
        assert json.loads(body)["error"] == "invalid_last_event_id"
    elif status == 400:
        assert any(ord(c) < 32 or ord(c) == 127 for c in value), value


@pytest.fixture(scope="module")
def sms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """The app with a Kannel gateway configured (nothing listens there) and one incident."""
    data: Path = tmp_path_factory.mktemp("sms") / "data"
    config = Settings.from_env(
        {},
        data_dir=data,
        public_url="http://x.test",
        sms_gateway="kannel+http://u:p@127.0.0.1:9/cgi-bin/sendsms",
        worker=False,
    )
    running = ThreadedServer(config, TIMEOUT).start()
    incident = running.post(
        "/api/incidents", {"title": "山洪", "severity": "severe", "code": "SZK"}
    )
    running.incident = incident["id"]  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


SMS_NAMES = ["from", "to", "text", "msgid", "message_id", "type", "secret", "smsc", "ts"]
sms_values = st.one_of(
    raw_values,
    st.sampled_from(
        ["%E8%AE%A2%E9%98%85%20SZK", "TD", "%E9%80%80%E8%AE%A2", "%2B8613800000001", "8", "1", "16"]
    ),
)
sms_queries = st.lists(st.tuples(st.sampled_from(SMS_NAMES), sms_values), max_size=6).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)


@OVER_HTTP
@given(path=st.sampled_from(["/sms/inbound", "/sms/dlr"]), query=sms_queries, post=st.booleans())
@example(path="/sms/inbound", query="from=%2B8613800000001&text=%FF%FE&msgid=1", post=False)
@example(path="/sms/dlr", query="message_id=../../x&type=%C2%B2", post=True)
def test_sms_callbacks_never_cause_a_server_error(
    sms_server: ThreadedServer, path: str, query: str, post: bool
) -> None:
    """Any query (GET) or form (POST) on the MO and DLR endpoints answers below 500, as JSON."""
    if post:
        status, headers, body = sms_server.request(
            "POST", path, query.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
    else:
        status, headers, body = sms_server.get(f"{path}?{query}")
    assert status < 500, (path, query, status, body[:300])
    if status >= 400:
        assert json.loads(body)["error"], body


# ``str.isdigit`` is true for "²" and "١", which ``int`` refuses or reads as 1.
@pytest.mark.parametrize(
    "target",
    [
        "/api/incidents/{id}/entries?after=%C2%B2",
        "/api/incidents/{id}/entries/%C2%B2",
        "/incidents/{id}/entries/%C2%B2/cap.xml",
        "/incidents/{id}/entries/%C2%B2",
        "/incidents/{id}?before=%C2%B2",
        "/api/webhooks/%C2%B2/deliveries",
    ],
)
def test_odd_digits_never_cause_a_server_error(server: ThreadedServer, target: str) -> None:
    """Unicode digits in a seq or cursor answer 4xx, never 500."""
    admin = {"Authorization": f"Bearer {server.token}"}
    url = target.format(id=server.incident)  # type: ignore[attr-defined]
    status, _, body = server.request("GET", url, headers=admin)
    assert 400 <= status < 500, (status, body[:200])


@pytest.mark.parametrize("target", ["/search?q=a%00b", "/api/search?q=a%00b"])
def test_nul_in_a_search_is_treated_as_a_space(server: ThreadedServer, target: str) -> None:
    """A NUL in a search query is read as a space: an answer, never a server error."""
    status, _, body = server.request("GET", target)
    assert status == 200, (status, body[:200])


def test_unicode_digit_last_event_id_is_refused(server: ThreadedServer) -> None:
    """A Last-Event-ID of "²" (a digit to str.isdigit, not to int) answers a JSON 400."""
    target = f"/api/incidents/{server.incident}/events"  # type: ignore[attr-defined]
    status, _, body = server.request("GET", target, headers={"Last-Event-ID": "\xc2\xb2"})
    assert status == 400, (status, body[:200])
