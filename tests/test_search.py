"""Tests for search: Chinese substrings, English words, ranking, snippets, redaction, the page."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from broadcaster.api.ops import merged_openapi
from broadcaster.appkeys import DB
from broadcaster.search.query import run_search
from broadcaster.search.service import PURGER, rebuild
from broadcaster.store import search as search_store
from broadcaster.store import search_postgres, search_sqlite
from broadcaster.store.pg_conn import dialect_of, translate
from tests.conftest import TIMEOUT, create_incident, post_entry

FLOOD = "沙子口街道突发山洪，已转移群众3400人。"
ROAD = "Road to Liuqing River reopened at 18:00; 道路抢通完毕。"
MARKER = "WITHHELD-7f3a 张某某住沙子口"
#: Every row version of PostgreSQL's search_rows, live or dead (pageinspect).
ROW_VERSIONS = (
    "SELECT h.t_data FROM generate_series(0, pg_relation_size('search_rows') / 8192 - 1) AS n,"
    " LATERAL heap_page_items(get_raw_page('search_rows', n::integer)) AS h"
    " WHERE h.t_data IS NOT NULL"
)


async def search(client: TestClient, q: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/search", params={"q": q, **params})
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def typhoon(client: TestClient, editor: dict[str, str]) -> str:
    incident = await create_incident(client, editor, title="台风梅花防御")
    await post_entry(client, editor, incident["id"], body=FLOOD)
    await post_entry(client, editor, incident["id"], body=ROAD)
    return incident["id"]


async def test_two_character_chinese_substring(client: TestClient, editor: dict[str, str]) -> None:
    """A two-character query finds the entry containing it, with the match highlighted."""
    iid = await typhoon(client, editor)
    results = await search(client, "山洪")
    assert [(r["incident"], r["seq"]) for r in results] == [(iid, 1)]
    hit = results[0]
    assert hit["title"] == "台风梅花防御"
    assert "<mark>山洪</mark>" in hit["snippet"]
    entry = await (await client.get(f"/api/incidents/{iid}/entries/1")).json()
    assert hit["posted_at"] == entry["posted_at"]


async def test_one_three_and_four_character_chinese(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Queries of one, three and four characters are substring matches too."""
    await typhoon(client, editor)
    assert [r["seq"] for r in await search(client, "洪")] == [1]
    assert [r["seq"] for r in await search(client, "转移群众")] == [1]
    assert [r["seq"] for r in await search(client, "抢通")] == [2]
    assert "<mark>转移群众</mark>" in (await search(client, "转移群众"))[0]["snippet"]
    assert await search(client, "泥石流") == []


async def test_english_words_any_case(client: TestClient, editor: dict[str, str]) -> None:
    """English words match whatever their case, alone or with Chinese terms (AND)."""
    await typhoon(client, editor)
    results = await search(client, "reopened")
    assert [r["seq"] for r in results] == [2]
    assert "<mark>reopened</mark>" in results[0]["snippet"]
    assert [r["seq"] for r in await search(client, "LIUQING river")] == [2]
    assert [r["seq"] for r in await search(client, "山洪 3400")] == [1]
    assert await search(client, "山洪 river") == []


async def test_incident_filter_and_ranking(client: TestClient, editor: dict[str, str]) -> None:
    """?incident= keeps one incident's entries; the entry about the term ranks first."""
    first = await typhoon(client, editor)
    other = await create_incident(client, editor, title="李村河道巡查")
    await post_entry(client, editor, other["id"], body="李村河上游出现小范围山洪，未造成人员伤亡。")
    await post_entry(
        client, editor, other["id"],
        body="山洪预警：山洪沟道附近群众请远离。山洪可能再次发生。",
    )  # fmt: skip
    everywhere = await search(client, "山洪")
    assert {(r["incident"], r["seq"]) for r in everywhere} == {(first, 1), (other["id"], 1),
                                                               (other["id"], 2)}  # fmt: skip
    assert (everywhere[0]["incident"], everywhere[0]["seq"]) == (other["id"], 2)
    only = await search(client, "山洪", incident=first)
    assert [(r["incident"], r["seq"]) for r in only] == [(first, 1)]
    missing = await client.get("/api/search", params={"q": "山洪", "incident": "nope"})
    assert missing.status == 404


async def test_snippets_escape_the_text(client: TestClient, editor: dict[str, str]) -> None:
    """Markup typed into an entry comes out escaped in the snippet; only <mark> is HTML."""
    incident = await create_incident(client, editor, title="测试")
    await post_entry(client, editor, incident["id"], body="注意 <script>alert(1)</script> 山洪")
    snippet = (await search(client, "山洪"))[0]["snippet"]
    assert "<script>" not in snippet
    assert "&lt;/script&gt;" in snippet and "<mark>山洪</mark>" in snippet


async def test_redacted_text_is_never_found(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """After a redaction no query finds the withheld text; the other entries stay findable."""
    iid = await typhoon(client, editor)
    await post_entry(client, editor, iid, body=MARKER)
    assert [r["seq"] for r in await search(client, "WITHHELD-7f3a")] == [3]
    response = await client.post(
        f"/api/incidents/{iid}/entries/3/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "涉及个人隐私"},
        headers=admin,
    )
    assert response.status == 201, await response.text()
    for q in ("WITHHELD-7f3a", "7f3a", "张某", "张某某住", "某"):
        assert all(r["seq"] != 3 for r in await search(client, q)), q
        assert all("张某" not in r["snippet"] for r in await search(client, q)), q
    assert [r["seq"] for r in await search(client, "山洪")] == [1]

    def leftovers(conn: sqlite3.Connection) -> list[str]:
        """Return the index tables whose stored rows still hold a character only the marker has."""
        if dialect_of(conn) == "postgresql":
            # Every row version, live or dead: the redaction VACUUMs search_rows after its commit.
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")  # the test's superuser
            versions = [bytes(row[0]) for row in conn.execute(ROW_VERSIONS)]
            assert versions  # the other entries' rows
            return ["search_rows"] if any("某".encode() in v for v in versions) else []
        return [
            table
            for table in ("search_text_data", "search_pairs_data", "search_text_content")
            if any("某".encode() in block for (block,) in conn.execute(
                f"SELECT CAST({'block' if table.endswith('data') else 'c1'} AS BLOB) FROM {table}"
            ))
        ]  # fmt: skip

    await asyncio.wait_for(client.app[PURGER].idle.wait(), TIMEOUT)
    assert await client.app[DB].read(leftovers) == []


async def test_answers_are_found_by_their_question(
    client: TestClient, editor: dict[str, str]
) -> None:
    """An answer entry is findable by the words of the question it quotes."""
    incident = await create_incident(client, editor, title="测试")
    asked = await client.post(
        f"/api/incidents/{incident['id']}/questions", json={"text": "崂山隧道何时恢复通行？"}
    )
    qid = (await asked.json())["id"]
    answer = await client.post(
        f"/api/incidents/{incident['id']}/questions/{qid}/answer",
        json={"body": "预计明日上午开放。"},
        headers=editor,
    )
    assert answer.status == 201
    assert [r["seq"] for r in await search(client, "隧道")] == [1]


async def test_bad_queries(client: TestClient) -> None:
    """An empty or oversized q answers 400 with its own code."""
    for params, code in (({}, "query_required"), ({"q": "  "}, "query_required"),
                         ({"q": "山" * 201}, "query_too_long")):  # fmt: skip
        response = await client.get("/api/search", params=params)
        assert (response.status, (await response.json())["error"]) == (400, code)
    assert await search(client, '"*') == []
    assert await search(client, 'NEAR( "山洪" OR x') == []
    assert await search(client, "\x00;SS") == []  # a NUL would end an FTS5 string early


async def test_rebuild_indexes_entries_written_before_the_index(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A database whose index is empty is indexed in full once."""
    await typhoon(client, editor)

    def wipe(conn: sqlite3.Connection) -> None:
        if dialect_of(conn) == "postgresql":
            conn.execute("DELETE FROM search_rows")
            conn.execute("DELETE FROM search_state")
            return
        for table in ("search_rows", "search_text", "search_state"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("INSERT INTO search_pairs (search_pairs) VALUES ('delete-all')")

    await client.app[DB].write(wipe)
    assert await search(client, "山洪") == []
    assert await client.app[DB].write(rebuild) == 2
    assert await client.app[DB].write(rebuild) == 0
    assert [r["seq"] for r in await client.app[DB].read(lambda c: run_search(c, "山洪"))] == [1]


async def test_search_page(client: TestClient, editor: dict[str, str]) -> None:
    """/search renders results with highlighted snippets, in Chinese and in English."""
    iid = await typhoon(client, editor)
    response = await client.get("/search", params={"q": "山洪"})
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "<mark>山洪</mark>" in page and f"/incidents/{iid}/entries/1" in page
    assert "找到 1 条相关通报" in page
    english = await (await client.get("/search", params={"q": "泥石流", "lang": "en"})).text()
    assert "Nothing matches." in english
    empty = await client.get("/search")
    assert empty.status == 200 and "<mark>" not in await empty.text()
    html = {"Accept": "text/html"}
    unknown = await client.get("/search", params={"q": "山洪", "incident": "nope"}, headers=html)
    assert unknown.status == 404 and unknown.content_type == "text/html"
    too_long = await client.get("/search", params={"q": "山" * 201}, headers=html)
    assert too_long.status == 400 and "关键词过长" in await too_long.text()
    scripted = await client.get("/search", params={"q": "山" * 201})
    assert (await scripted.json())["error"] == "query_too_long"


ACCOUNTABILITY_MODULES = {
    "broadcaster.accountability.metrics_api", "broadcaster.accountability.figures_api",
    "broadcaster.accountability.questions", "broadcaster.search.service", "channels.cap.serve",
    "channels.pages.search",
}  # fmt: skip


def conforms(instance: Any, schema: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/<schema>`` of the merged document."""
    document = merged_openapi()
    wrapper = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    jsonschema.Draft202012Validator(wrapper).validate(instance)


async def test_accountability_endpoints_are_documented_truly(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Every route of this feature is in /api/openapi.json and real answers match its schemas."""
    paths = merged_openapi()["paths"]
    routes = [
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        and getattr(route.handler, "__module__", "") in ACCOUNTABILITY_MODULES
    ]  # fmt: skip
    assert len(routes) == 11
    assert [(m, p) for m, p in routes if m not in paths.get(p, {})] == []
    iid = await typhoon(client, editor)
    await post_entry(client, editor, iid, figures={"injured": 3})
    asked = await client.post(f"/api/incidents/{iid}/questions", json={"text": "何时恢复供电？"})
    conforms(await asked.json(), "QuestionAccepted")
    conforms(await (await client.get(f"/api/incidents/{iid}/metrics")).json(), "Metrics")
    conforms(await (await client.get(f"/api/incidents/{iid}/figures")).json(), "Figures")
    listed = await client.get(f"/api/incidents/{iid}/questions", headers=editor)
    conforms(await listed.json(), "QuestionList")
    bulk = await client.post(
        f"/api/incidents/{iid}/questions/dismiss",
        json={"reason": "重复", "ids": []},
        headers=editor,
    )
    conforms(await bulk.json(), "BulkDismissed")
    conforms(await (await client.get("/api/search", params={"q": "山洪"})).json(), "SearchResults")


async def test_wildcards_and_quotes_are_literal(client: TestClient, editor: dict[str, str]) -> None:
    """LIKE's and FTS5's special characters in a term match only themselves."""
    incident = await create_incident(client, editor, title="测试")
    for body in ("通道A_B1开放", "通道AXB1开放", "完成100%", "完成1000户", '标注"急"字'):
        await post_entry(client, editor, incident["id"], body=body)
    assert [r["seq"] for r in await search(client, "a_b1")] == [1]
    assert [r["seq"] for r in await search(client, "100%")] == [3]
    assert [r["seq"] for r in await search(client, '"急"字')] == [5]


async def test_postgresql_indexes_answer_both_kinds_of_term(
    client: TestClient, editor: dict[str, str], backend: str
) -> None:
    """pg_trgm takes CJK characters as word characters; short and long terms have an index."""
    if backend != "postgresql":
        pytest.skip("about PostgreSQL's indexes")
    await typhoon(client, editor)

    def plans(conn: Any) -> tuple[int, list[str]]:
        trigrams = conn.execute("SELECT cardinality(show_trgm('崂山区沙子口'))").fetchone()[0]
        found = []
        with conn.raw.transaction():  # the tiny table would otherwise be read whole
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_indexscan = off")
            for terms in (["山洪"], ["转移群众"], ["洪", "flood", "沙子口"]):
                sql, params = search_postgres.statement(terms, None, 20)
                plan = conn.raw.execute("EXPLAIN " + translate(sql), params).fetchall()
                found.append("\n".join(row[0] for row in plan))
        return trigrams, found

    trigrams, (short, long, mixed) = await client.app[DB].read(plans)
    assert trigrams == 7  # two padded ones at the ends, four inside
    assert "search_rows_grams" in short and "search_rows_trgm" not in short
    assert "search_rows_trgm" in long and "search_rows_grams" not in long
    assert "Seq Scan on search_rows" not in mixed
    assert "search_rows_trgm" in mixed or "search_rows_grams" in mixed


async def test_a_search_past_its_time_budget_is_stopped_with_a_clear_answer(
    client: TestClient, editor: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: one search on pathological text took 11.7 s. A search now stops at its
    budget and answers 503 search_timeout, and the next search works on the same reader."""
    iid = (await create_incident(client, editor))["id"]
    await post_entry(client, editor, iid, body="沙子口水位上涨")
    monkeypatch.setattr(search_store, "BUDGET", 0.2)
    real = {"sqlite": search_sqlite.find, "postgresql": search_postgres.find}

    def slow_sqlite(conn: Any, *args: Any) -> Any:
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e9)"
            " SELECT count(*) FROM c"
        ).fetchone()
        return real["sqlite"](conn, *args)

    def slow_postgres(conn: Any, *args: Any) -> Any:
        conn.raw.execute("SELECT pg_sleep(30)")
        return real["postgresql"](conn, *args)

    with monkeypatch.context() as patch:
        patch.setattr(search_sqlite, "find", slow_sqlite)
        patch.setattr(search_postgres, "find", slow_postgres)
        started = time.monotonic()
        response = await client.get("/api/search", params={"q": "水位"})
        assert response.status == 503
        assert (await response.json())["error"] == "search_timeout"
        assert time.monotonic() - started < TIMEOUT
    for _ in range(5):  # every reader recovers
        response = await client.get("/api/search", params={"q": "水位"})
        assert response.status == 200
        assert [r["seq"] for r in (await response.json())["results"]] == [1]
