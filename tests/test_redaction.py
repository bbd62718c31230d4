"""Lawful redaction: the withheld text leaves every surface and the file, the chain still verifies.

The surfaces are listed once (``SURFACES``) and each is fetched only if the
application routes it, so the list covers pages, feeds, search and CAP as
those modules land; every other GET route that takes only an incident and a
seq is swept too.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broadcaster.app import create_app
from broadcaster.log.fetch import fetch_timeline
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.settings import Settings
from tests.conftest import TIMEOUT, bearer, create_incident, make_token, post_entry
from tests.raw_store import raw_store

ASCII_MARKER = "Zq7vMarker"
CJK_MARKER = "绝密标记甲乙丙"
SECRET = f"目击者称肇事车辆为 {ASCII_MARKER} 型，车主{CJK_MARKER}已离开现场。"
BASIS = "政府信息公开条例第十五条"

#: Searches ask for part of a marker (pages echo the query) and must not return all of it.
SEARCH_TERMS = (ASCII_MARKER[:5], CJK_MARKER[:4])

#: (URL template, whether the marker must show there before the redaction).
#: ``{i}`` is the incident, ``{s}`` the redacted seq, ``{q}`` a search term.
SURFACES = [
    ("/api/incidents/{i}/entries", True),
    ("/api/incidents/{i}/entries/{s}", True),
    ("/incidents/{i}", True),
    ("/incidents/{i}?lang=en", True),
    ("/incidents/{i}?order=asc", True),
    ("/incidents/{i}/entries/{s}", True),
    ("/incidents/{i}/entries/{s}?lang=en", True),
    ("/incidents/{i}/feed.atom", True),
    ("/incidents/{i}/feed.rss", True),
    ("/incidents/{i}/feed.json", True),
    ("/feed.atom", True),
    ("/feed.rss", True),
    ("/feed.json", True),
    ("/api/search?q={q}", True),
    ("/search?q={q}", True),
    ("/incidents/{i}/entries/{s}/cap.xml", True),
    ("/incidents/{i}/cap.xml", False),
    ("/", False),
]
STREAMS = ("/api/incidents/{}/events", "/ws/incidents/{}")
FEEDS = [path for path, _ in SURFACES if ".atom" in path or ".rss" in path or ".json" in path]


def route_patterns(app: web.Application) -> list[tuple[str, re.Pattern[str]]]:
    """Return each GET route's canonical path and a regex matching concrete paths."""
    found = []
    for resource in app.router.resources():
        if not any(route.method in ("GET", "*") for route in resource):
            continue
        canonical = resource.canonical
        parts = re.split(r"(\{[^}]+\})", canonical)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        found.append((canonical, re.compile(regex + "$")))
    return found


def routed(app: web.Application, url: str) -> bool:
    path = url.split("?", 1)[0]
    return any(pattern.match(path) for _, pattern in route_patterns(app))


def leaks(text: str) -> bool:
    """Tell whether either marker is in ``text``, raw, JSON-escaped or as HTML entities."""
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    forms = (text, unescaped, html.unescape(text))
    return any(ASCII_MARKER in form or CJK_MARKER in form for form in forms)


async def read_stream(client: TestClient, path: str, head: int) -> str:
    """Read a live stream's backlog (SSE or WebSocket) up to the entry ``head``."""
    async with asyncio.timeout(TIMEOUT):
        if path.startswith("/ws/"):
            frames = []
            async with client.ws_connect(path + "?after=0") as ws:
                while True:
                    frame = await ws.receive_str()
                    frames.append(frame)
                    message = json.loads(frame)
                    if message["type"] == "entry" and message["entry"]["seq"] >= head:
                        return "\n".join(frames)
        async with client.get(path + "?after=0") as response:
            assert response.status == 200
            text = ""
            while f"id: {head}\n" not in text:
                text += (await response.content.readany()).decode()
            return text


async def surfaces(
    client: TestClient, headers: dict[str, str], incident_id: str, seq: int, head: int
) -> dict[str, tuple[bool, str]]:
    """Fetch every routed surface; return url -> (must show the marker before, body)."""
    fill = {"i": incident_id, "s": str(seq)}
    urls: dict[str, bool] = {}
    for template, expected in SURFACES:
        for q in SEARCH_TERMS if "{q}" in template else ("",):
            url = template.format(**fill, q=q)
            if routed(client.app, url):
                urls[url] = expected
    listed = set(urls)
    for canonical, _ in route_patterns(client.app):
        names = set(re.findall(r"\{([^}]+)\}", canonical))
        if names <= {"incident", "seq"} and canonical.replace("{incident}", "{}") not in STREAMS:
            urls.setdefault(canonical.format(incident=incident_id, seq=seq), False)
    found: dict[str, tuple[bool, str]] = {}
    for url, expected in urls.items():
        response = await client.get(url, headers=headers)
        # The listed surfaces must work; swept routes may refuse (e.g. an unconfigured gateway).
        assert response.status == 200 or url not in listed, (url, response.status)
        found[url] = (expected, await response.text())
    for stream in STREAMS:
        path = stream.format(incident_id)
        if routed(client.app, path):
            found[path] = (True, await read_stream(client, path, head))
    return found


async def verified(client: TestClient, incident_id: str) -> None:
    data = await fetch_timeline(str(client.make_url("")), incident_id)
    report = check_timeline(incident_id, data["entries"], data["checkpoint"], data["keys"])
    assert report.ok, report.problems


def files_holding_marker(data_dir: Path) -> list[str]:
    """Return the files under ``data_dir`` whose bytes hold either marker."""
    needles = (ASCII_MARKER.encode(), CJK_MARKER.encode("utf-8"))
    return [
        str(path.relative_to(data_dir))
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and any(n in path.read_bytes() for n in needles)
    ]


async def redact(
    client: TestClient, headers: dict[str, str], incident_id: str, seq: int, **body: Any
) -> Any:
    return await client.post(
        f"/api/incidents/{incident_id}/entries/{seq}/redact",
        json={"basis": BASIS, "reason": "含个人信息", **body},
        headers=headers,
    )


async def timeline_with_secret(client: TestClient, editor: dict[str, str]) -> tuple[str, dict]:
    """Create an incident whose entry 2 holds the markers, between two ordinary ones."""
    incident = await create_incident(client, editor, title="崂山区交通事故")
    await post_entry(client, editor, incident["id"], body="事故现场已封闭。")
    secret = await post_entry(client, editor, incident["id"], body=SECRET)
    await post_entry(client, editor, incident["id"], body="道路已恢复通行。")
    return incident["id"], secret


async def test_redaction_appends_an_entry_and_keeps_the_hashes(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """The redaction entry names the seq and basis; the redacted entry keeps its hashes."""
    incident_id, secret = await timeline_with_secret(client, editor)
    response = await redact(client, admin, incident_id, 2)
    assert response.status == 201
    entry = await response.json()
    assert (entry["kind"], entry["redacts"], entry["seq"]) == ("redaction", 2, 4)
    assert BASIS in entry["body"] and "含个人信息" in entry["body"]
    assert response.headers["Location"] == f"/api/incidents/{incident_id}/entries/4"
    redacted = await (await client.get(f"/api/incidents/{incident_id}/entries/2")).json()
    assert redacted["redacted"] is True
    assert (redacted["body"], redacted["salt"]) == ("", None)
    assert BASIS in redacted["html"]
    assert (redacted["hash"], redacted["content_hash"]) == (secret["hash"], secret["content_hash"])
    await verified(client, incident_id)


async def test_marker_is_on_no_surface_after_redaction(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """Before: the marker shows on every surface that renders the entry; after: on none."""
    incident_id, _ = await timeline_with_secret(client, editor)
    before = await surfaces(client, admin, incident_id, 2, head=3)
    missing = [url for url, (expected, text) in before.items() if expected and not leaks(text)]
    assert missing == [], "the marker should show here before the redaction"
    etags = {}
    for url in FEEDS:
        if routed(client.app, url):
            feed_url = url.format(i=incident_id)
            etags[feed_url] = (await client.get(feed_url)).headers.get("ETag")
    assert (await redact(client, admin, incident_id, 2)).status == 201
    after = await surfaces(client, admin, incident_id, 2, head=4)
    assert [url for url, (_, text) in after.items() if leaks(text)] == []
    for url, etag in etags.items():
        response = await client.get(url, headers={"If-None-Match": etag or '"none"'})
        assert response.status == 200, f"{url} answered from a stale cache"
        assert not leaks(await response.text())
    await verified(client, incident_id)


async def test_live_viewers_receive_the_redaction(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """A WebSocket viewer connected before the redaction receives the redaction entry."""
    incident_id, _ = await timeline_with_secret(client, editor)
    if not routed(client.app, f"/ws/incidents/{incident_id}"):
        pytest.skip("the WebSocket channel is not routed in this build")
    async with client.ws_connect(f"/ws/incidents/{incident_id}?after=3") as ws:
        async with asyncio.timeout(TIMEOUT):
            assert json.loads(await ws.receive_str())["type"] == "hello"
            assert (await redact(client, admin, incident_id, 2)).status == 201
            message = json.loads(await ws.receive_str())
    assert (message["entry"]["kind"], message["entry"]["redacts"]) == ("redaction", 2)


async def test_verify_command_passes_after_redaction(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """The real ``broadcaster verify`` exits 0 on a timeline with a redacted entry."""
    incident_id, _ = await timeline_with_secret(client, editor)
    assert (await redact(client, admin, incident_id, 2)).status == 201
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broadcaster.cli",
        "verify",
        str(client.make_url("")),
        incident_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 3)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith("intact: 4 entries")


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        yield client


@pytest.mark.single_backend("reads the bytes of the SQLite file; PostgreSQL has its own test")
async def test_text_survives_neither_restart_nor_the_file(settings: Settings) -> None:
    """After a redaction the text is in no file of the data dir, and a restart serves none."""
    async with serve(settings) as client:
        editor = bearer(await make_token(client, "editor", "值班编辑"))
        admin = bearer(await make_token(client, "admin", "管理员"))
        incident_id, _ = await timeline_with_secret(client, editor)
        for n in range(30):  # enough rows that the secret shares pages with later content
            await post_entry(client, editor, incident_id, body=f"第{n}次通报：现场秩序良好。")
        assert files_holding_marker(settings.data_dir) != []
        assert (await redact(client, admin, incident_id, 2)).status == 201
        assert files_holding_marker(settings.data_dir) == []
    assert files_holding_marker(settings.data_dir) == []
    async with serve(settings) as client:
        admin = bearer(await make_token(client, "admin", "管理员2"))
        after = await surfaces(client, admin, incident_id, 2, head=34)
        assert [url for url, (_, text) in after.items() if leaks(text)] == []
        await verified(client, incident_id)


#: Every row version (line pointer) of a table with its raw bytes, dead ones included.
ROW_VERSIONS = (
    "SELECT encode(h.t_data, 'hex')"
    " FROM generate_series(0, pg_relation_size(?::regclass) / 8192 - 1) AS n,"
    " LATERAL heap_page_items(get_raw_page(?, n::integer)) AS h WHERE h.t_data IS NOT NULL"
)


async def test_postgresql_keeps_no_row_version_of_the_text(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL no row, live or dead, holds the text after a redaction: VACUUM ran."""
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", public_url="http://example.test",
        database_url=database_url, redis_url=redis_url,
    )  # fmt: skip
    async with serve(settings) as client:
        editor = bearer(await make_token(client, "editor", "值班编辑"))
        admin = bearer(await make_token(client, "admin", "管理员"))
        incident_id, _ = await timeline_with_secret(client, editor)
        keyed = {**editor, "Idempotency-Key": "secret-again"}  # a stored answer holds it too
        body = {"body": SECRET}
        url = f"/api/incidents/{incident_id}/entries"
        assert (await client.post(url, json=body, headers=keyed)).status == 201
        with raw_store(settings) as conn:
            assert leaks(conn.dump())
        for seq in (2, 4):
            assert (await redact(client, admin, incident_id, seq)).status == 201
    with raw_store(settings) as conn:
        assert not leaks(conn.dump())
        vacuumed = conn.rows(
            "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
        )
        assert {"contents", "idempotency", "drafts", "questions"} <= {row[0] for row in vacuumed}
        conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")  # the test's own superuser
        for table in ("contents", "idempotency"):
            versions = [bytes.fromhex(row[0]) for row in conn.rows(ROW_VERSIONS, (table, table))]
            assert versions, table
            assert not [v for v in versions if leaks(v.decode("utf-8", "replace"))], table


async def test_replayed_post_answers_the_redacted_entry(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """A replayed Idempotency-Key answers the entry as redacted, never the stored text."""
    incident = await create_incident(client, editor)
    url = f"/api/incidents/{incident['id']}/entries"
    headers = {**editor, "Idempotency-Key": "secret-1"}
    assert (await client.post(url, json={"body": SECRET}, headers=headers)).status == 201
    assert (await redact(client, admin, incident["id"], 1)).status == 201
    replay = await client.post(url, json={"body": SECRET}, headers=headers)
    assert replay.status == 201
    text = await replay.text()
    assert not leaks(text)
    assert json.loads(text)["redacted"] is True


@pytest.mark.parametrize(
    ("seq", "body", "status", "code"),
    [
        (9, {}, 404, "entry_not_found"),
        (4, {}, 409, "not_redactable"),
        (2, {}, 409, "already_redacted"),
        (1, {"basis": " "}, 422, "basis_required"),
        (1, {"reason": ""}, 422, "reason_required"),
        (1, {"reason": "张三电话13812345678"}, 422, "disclosure_review"),
        (1, {"why": "x"}, 422, "unknown_field"),
    ],
    ids=["unknown-seq", "a-redaction", "twice", "no-basis", "no-reason", "reason-leaks", "extra"],
)
async def test_refusals_append_nothing(
    client: TestClient,
    editor: dict[str, str],
    admin: dict[str, str],
    seq: int,
    body: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Each refused redaction has its own code and leaves the timeline as it was."""
    incident_id, _ = await timeline_with_secret(client, editor)
    assert (await redact(client, admin, incident_id, 2)).status == 201
    response = await redact(client, admin, incident_id, seq, **body)
    assert (response.status, (await response.json())["error"]) == (status, code)
    head = (await (await client.get(f"/api/incidents/{incident_id}")).json())["head"]
    assert head["seq"] == 4


async def test_only_admins_redact(
    client: TestClient, editor: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Editors and reviewers get 403, anonymous callers 401, an unknown incident 404."""
    incident_id, _ = await timeline_with_secret(client, editor)
    assert (await redact(client, editor, incident_id, 2)).status == 403
    assert (await redact(client, reviewer, incident_id, 2)).status == 403
    assert (await redact(client, {}, incident_id, 2)).status == 401
    admin = bearer(await make_token(client, "admin", "管理员"))
    response = await redact(client, admin, "no-such-incident", 1)
    assert (response.status, (await response.json())["error"]) == (404, "incident_not_found")
