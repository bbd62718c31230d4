"""Tests for channels.feeds.serve: the feeds as HTTP resources (caching, preconditions, links)."""

from __future__ import annotations

import gzip
import json
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import aiohttp
import feedparser
import pytest
from aiohttp.test_utils import TestClient

from broadcaster.appkeys import DB
from channels.feeds import serve as feeds_module
from channels.feeds.serve import FEEDS
from tests.conftest import create_incident, post_entry

FORMATS = ("atom", "rss", "json")


async def test_incident_feeds_parse_without_bozo(client: TestClient, editor: dict) -> None:
    """Every per-incident feed parses cleanly and lists entries newest first, absolutely linked."""
    incident = await create_incident(client, editor)
    for n in range(3):
        await post_entry(client, editor, incident["id"], body=f"第{n + 1}次通报 & <b>进展</b>")
    for fmt in ("atom", "rss"):
        response = await client.get(f"/incidents/{incident['id']}/feed.{fmt}")
        assert response.status == 200
        parsed = feedparser.parse(await response.read())
        assert not parsed.bozo, parsed.get("bozo_exception")
        links = [e.link for e in parsed.entries]
        base = f"http://example.test/incidents/{incident['id']}/entries/"
        assert links == [base + "3", base + "2", base + "1"]
    response = await client.get(f"/incidents/{incident['id']}/feed.json")
    assert response.headers["Content-Type"].startswith("application/feed+json")
    feed = json.loads(await response.read())
    assert [item["id"].rsplit("/", 1)[1] for item in feed["items"]] == ["3", "2", "1"]
    assert feed["feed_url"] == f"http://example.test/incidents/{incident['id']}/feed.json"


async def test_empty_incident_feed_is_valid(client: TestClient, editor: dict) -> None:
    """An incident without entries has valid, empty feeds in every format."""
    incident = await create_incident(client, editor)
    for fmt in ("atom", "rss"):
        response = await client.get(f"/incidents/{incident['id']}/feed.{fmt}")
        parsed = feedparser.parse(await response.read())
        assert response.status == 200 and not parsed.bozo and parsed.entries == []
    response = await client.get(f"/incidents/{incident['id']}/feed.json")
    assert json.loads(await response.read())["items"] == []


async def test_etag_answers_304_and_changes_on_publish(client: TestClient, editor: dict) -> None:
    """If-None-Match gets 304 until a new entry changes the head, then 200 with a new ETag."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    url = f"/incidents/{incident['id']}/feed.atom"
    first = await client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["Cache-Control"] == "no-cache"
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    await post_entry(client, editor, incident["id"], body="新的进展")
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert "新的进展" in await changed.text()


async def test_if_modified_since_both_ways(client: TestClient, editor: dict) -> None:
    """If-Modified-Since at Last-Modified answers 304; an older date answers 200."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    url = f"/incidents/{incident['id']}/feed.rss"
    first = await client.get(url)
    modified = first.headers["Last-Modified"]
    same = await client.get(url, headers={"If-Modified-Since": modified})
    assert same.status == 304
    older = parsedate_to_datetime(modified).replace(year=2000)
    stale = await client.get(url, headers={"If-Modified-Since": format_datetime(older, True)})
    assert stale.status == 200 and await stale.read() == await first.read()


async def test_head_request(client: TestClient, editor: dict) -> None:
    """HEAD answers the same headers as GET without a body."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    url = f"/incidents/{incident['id']}/feed.json"
    get = await client.get(url)
    head = await client.head(url)
    assert head.status == 200
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""


async def test_rendered_once_per_head(client: TestClient, editor: dict) -> None:
    """Repeated requests for an unchanged feed are served from the cache."""
    incident = await create_incident(client, editor)
    await post_entry(client, editor, incident["id"])
    cache = client.app[FEEDS]
    before = cache.renders
    for _ in range(5):
        assert (await client.get(f"/incidents/{incident['id']}/feed.atom")).status == 200
    assert cache.renders == before + 1


async def test_global_feed_spans_incidents(client: TestClient, editor: dict) -> None:
    """The all-incidents feed holds the newest entries of every incident with their titles."""
    one = await create_incident(client, editor, title="沙子口山洪")
    two = await create_incident(client, editor, title="李村河水位预警", severity="moderate")
    await post_entry(client, editor, one["id"], body="甲")
    await post_entry(client, editor, two["id"], body="乙")
    response = await client.get("/feed.atom")
    parsed = feedparser.parse(await response.read())
    assert not parsed.bozo
    assert [e.link for e in parsed.entries] == [
        f"http://example.test/incidents/{two['id']}/entries/1",
        f"http://example.test/incidents/{one['id']}/entries/1",
    ]
    assert parsed.entries[0].title.startswith("李村河水位预警")
    etag = response.headers["ETag"]
    assert (await client.get("/feed.atom", headers={"If-None-Match": etag})).status == 304
    await post_entry(client, editor, one["id"], body="丙")
    assert (await client.get("/feed.atom", headers={"If-None-Match": etag})).status == 200
    for fmt in ("rss", "json"):
        assert (await client.get(f"/feed.{fmt}")).status == 200


async def test_global_feed_caps_at_50(client: TestClient, editor: dict) -> None:
    """The all-incidents feed carries at most the latest 50 entries."""
    incident = await create_incident(client, editor)
    for n in range(52):
        await post_entry(client, editor, incident["id"], body=f"通报{n}")
    feed = json.loads(await (await client.get("/feed.json")).read())
    assert len(feed["items"]) == 50
    assert feed["items"][0]["id"].endswith("/entries/52")


async def test_unknown_incident_is_404(client: TestClient) -> None:
    """A feed of an unknown incident answers the contract's JSON 404."""
    response = await client.get("/incidents/nope/feed.atom")
    assert response.status == 404
    assert (await response.json())["error"] == "incident_not_found"


async def test_redacted_entry_is_a_tombstone(client: TestClient, editor: dict) -> None:
    """A redacted entry (rows as the redaction module writes them) is an Atom tombstone."""
    incident = await create_incident(client, editor)
    entry = await post_entry(client, editor, incident["id"], body="联系人张某某，住址南窑村五号")
    await post_entry(client, editor, incident["id"], body="后续")
    db = client.app[DB]

    def redact(conn) -> None:
        conn.execute("DELETE FROM contents WHERE content_hash = ?", (entry["content_hash"],))
        conn.execute(
            "INSERT INTO redactions VALUES (?, 1, 2, '政府信息公开条例第十五条',"
            " '2026-11-26T07:00:00.000Z', '应急管理局')",
            (incident["id"],),
        )

    await db.write(redact)
    # A real redaction appends its own entry, which moves the head: so does this one.
    await post_entry(client, editor, incident["id"], body="再后续")
    text = await (await client.get(f"/incidents/{incident['id']}/feed.atom")).text()
    assert "南窑村五号" not in text
    assert "deleted-entry" in text and 'when="2026-11-26T07:00:00.000Z"' in text


async def test_cache_keeps_one_render_per_feed(client: TestClient, editor: dict) -> None:
    """Old heads' renders are dropped: memory grows with feeds, not with entries."""
    incident = await create_incident(client, editor)
    for _ in range(5):
        await post_entry(client, editor, incident["id"])
        for fmt in ("atom", "rss", "json"):
            response = await client.get(f"/incidents/{incident['id']}/feed.{fmt}")
            assert response.status == 200
    assert len(client.app[FEEDS]) == 3


async def raw_get(client: TestClient, path: str, **headers: str) -> tuple[int, Any, bytes]:
    """GET without decompressing, so the test sees the bytes as sent."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(client.make_url(path), headers=headers) as response,
    ):
        return response.status, response.headers, await response.read()


async def test_feeds_are_served_gzipped_from_bytes_compressed_once(
    client: TestClient, editor: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client taking gzip gets the cached compressed bytes, with their own strong ETag."""
    compressed = []
    real = feeds_module.gzip.compress
    monkeypatch.setattr(
        feeds_module.gzip, "compress", lambda *a, **k: compressed.append(1) or real(*a, **k)
    )
    inc = await create_incident(client, editor)
    for n in range(3):
        await post_entry(client, editor, inc["id"], body=f"第{n}次通报：" + "水位上涨。" * 50)
    path = f"/incidents/{inc['id']}/feed.atom"
    _, plain_headers, plain = await raw_get(client, path, **{"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain_headers
    for _ in range(20):
        status, headers, body = await raw_get(client, path, **{"Accept-Encoding": "br, gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain and len(body) < len(plain) / 2
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["ETag"] == plain_headers["ETag"][:-1] + '-gz"'
    assert len(compressed) == 1, "compressed once per head, never per request"
    for tag in (headers["ETag"], plain_headers["ETag"]):
        status, _, _ = await raw_get(client, path, **{"If-None-Match": tag})
        assert status == 304
    _, refused, _ = await raw_get(client, path, **{"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused


async def test_a_feed_holds_a_bounded_number_of_bytes(
    client: TestClient, editor: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: huge entries made feeds of tens of MiB. A feed now stops at FEED_BYTES of
    entry text, newest first, always keeping at least the newest entry."""
    monkeypatch.setattr(feeds_module, "FEED_BYTES", 20_000)
    inc = await create_incident(client, editor)
    for n in range(6):
        await post_entry(client, editor, inc["id"], body=f"第{n}次通报" + "水" * 3000)
    response = await client.get(f"/incidents/{inc['id']}/feed.json")
    items = (await response.json())["items"]
    assert 1 <= len(items) < 6
    assert items[0]["id"].endswith("/entries/6")
    monkeypatch.setattr(feeds_module, "FEED_BYTES", 10)
    assert feeds_module.within_bytes([{"body": "x" * 99, "html": ""}]) != []
