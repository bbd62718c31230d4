"""Tests for channels.feeds.render: Atom, RSS and JSON Feed output of the timeline."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from entry_dicts import BASIS, MARKER, make_entry
from lxml import etree

from channels.feeds.render import (
    TOMBSTONE_NS,
    FeedSource,
    render_atom,
    render_json_feed,
    render_rss,
)

SCHEMAS = Path(__file__).parent / "schemas"
PUBLIC_URL = "https://yjj.example.gov.cn"
ATOM_NS = "http://www.w3.org/2005/Atom"
RENDERERS = {"atom": render_atom, "rss": render_rss, "json": render_json_feed}


def make_source(**overrides: Any) -> FeedSource:
    fields: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "title": "崂山区沙子口街道山洪",
        "subtitle": "崂山区人民政府应急通报",
        "self_path": "/incidents/szk/feed",
        "html_path": "/incidents/szk",
        "updated": datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        "language": "zh-CN",
        "author_name": "崂山区人民政府",
    }
    fields.update(overrides)
    return FeedSource(**fields)


def make_redacted(seq: int, redaction_seq: int) -> dict[str, Any]:
    """Build a redacted entry whose caller (wrongly) left the withheld text in ``body``."""
    return make_entry(
        seq,
        body=MARKER,
        html=f"<p>本条信息已依据{html.escape(BASIS)}删除。</p>",
        salt=None,
        redacted=True,
        redaction={
            "seq": redaction_seq,
            "posted_at": f"2026-11-26T06:{redaction_seq:02d}:05.123Z",
            "basis": BASIS,
        },
    )


def timeline() -> list[dict[str, Any]]:
    """Return five entries newest first: a redaction, a correction with figures, updates."""
    return [
        make_entry(5, f"依据{BASIS}删除第3条。", kind="redaction", redacts=3),
        make_entry(
            4,
            "更正：受伤人数应为12人。",
            kind="correction",
            corrects=2,
            figures={"deaths": 0, "injured": 12, "evacuated": 3400, "x-vehicles": 7},
        ),
        make_redacted(3, 5),
        make_entry(2, figures={"injured": 13}),
        make_entry(1),
    ]


def plain_timeline() -> list[dict[str, Any]]:
    """Return the timeline without the redacted entry (so without tombstones)."""
    return [entry for entry in timeline() if not entry["redacted"]]


def url(seq: int) -> str:
    return f"{PUBLIC_URL}/incidents/szk/entries/{seq}"


def read_items(fmt: str, data: bytes) -> list[dict[str, Any]]:
    """Return each item's id, link, title, content and publication time, in feed order.

    Atom and RSS are read by feedparser, which must not flag them. feedparser 6.0 cannot read
    JSON Feed, so that one is read with ``json`` (and checked against its schema elsewhere).
    """
    if fmt == "json":
        return [
            {
                "id": item["id"],
                "link": item["url"],
                "title": item["title"],
                "content": item["content_html"],
                "published": datetime.fromisoformat(item["date_published"]),
            }
            for item in json.loads(data)["items"]
        ]
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [
        {
            "id": item.id,
            "link": item.link,
            "title": item.title,
            "content": item.content[0].value if "content" in item else item.description,
            "published": datetime(*item.published_parsed[:6], tzinfo=UTC),
        }
        for item in parsed.entries
    ]


def atom_rng() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMAS / "atom.rng")))


def json_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    schema = json.loads((SCHEMAS / "jsonfeed-1.1.schema.json").read_text("utf-8"))
    base = json.loads((SCHEMAS / "jsonfeed-1.schema.json").read_text("utf-8"))
    resource = referencing.Resource.from_contents(base)
    registry = referencing.Registry().with_resource("https://json.schemastore.org/feed-1", resource)
    return jsonschema.Draft4Validator(
        schema, registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_feedparser_reads_atom_and_rss_without_bozo(fmt: str) -> None:
    """Atom and RSS, tombstones included, parse cleanly in feedparser."""
    parsed = feedparser.parse(RENDERERS[fmt](make_source(), timeline()))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title == "崂山区沙子口街道山洪"
    assert parsed.feed.link == f"{PUBLIC_URL}/incidents/szk"


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_ids_and_links_are_permanent_urls_newest_first(fmt: str) -> None:
    """Each item's id and link is its entry's permanent URL, in the given newest-first order."""
    items = read_items(fmt, RENDERERS[fmt](make_source(), plain_timeline()))
    expected = [url(seq) for seq in (5, 4, 2, 1)]
    assert [item["id"] for item in items] == expected
    assert [item["link"] for item in items] == expected


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_content_is_the_entry_html(fmt: str) -> None:
    """An item without figures carries exactly the entry's html as its content."""
    entry = make_entry(1, "道路 <已> 抢通 & 恢复")
    [item] = read_items(fmt, RENDERERS[fmt](make_source(), [entry]))
    assert item["content"] == entry["html"]


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_dates_are_posted_at(fmt: str) -> None:
    """Each item's publication date is its entry's posted_at."""
    [item] = read_items(fmt, RENDERERS[fmt](make_source(), [make_entry(7)]))
    assert item["published"].replace(microsecond=0) == datetime(2026, 11, 26, 6, 7, 5, tzinfo=UTC)


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_figures_are_appended_as_a_table(fmt: str) -> None:
    """Figures follow the html as a table with Chinese labels and custom keys as is."""
    content = read_items(fmt, RENDERERS[fmt](make_source(), plain_timeline()))[1]["content"]
    assert content.startswith("<p>更正：受伤人数应为12人。</p><table")
    for label, value in (("死亡", 0), ("受伤", 12), ("转移", 3400), ("x-vehicles", 7)):
        assert f'<th scope="row">{label}</th><td>{value}</td>' in content


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_titles_carry_kind_label_and_text(fmt: str) -> None:
    """Item titles read like "更正 #4（更正 #2）：…", truncated to about 40 characters."""
    entries = [make_entry(2, "更正数字", kind="correction", corrects=1), make_entry(1, "长" * 60)]
    items = read_items(fmt, RENDERERS[fmt](make_source(), entries))
    assert [item["title"] for item in items] == [
        "更正 #2（更正 #1）：更正数字",
        f"更新 #1：{'长' * 40}…",
    ]


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_global_feed_titles_are_prefixed_with_the_incident(fmt: str) -> None:
    """In the all-incidents feed each title starts with its incident's title."""
    entries = [make_entry(1, "首报", incident="hz"), make_entry(3, "续报")]
    incidents = {"szk": {"title": "沙子口山洪"}, "hz": {"title": "黄岛火灾"}}
    source = make_source(self_path="/feed", html_path="/")
    items = read_items(fmt, RENDERERS[fmt](source, entries, incidents))
    assert [item["title"] for item in items] == [
        "黄岛火灾 · 更新 #1：首报",
        "沙子口山洪 · 更新 #3：续报",
    ]
    assert items[0]["id"] == f"{PUBLIC_URL}/incidents/hz/entries/1"


def test_atom_without_tombstones_validates_against_rfc4287_schema() -> None:
    """A feed without redactions is valid against the RFC 4287 RELAX NG schema."""
    rng = atom_rng()
    feed = etree.fromstring(render_atom(make_source(), plain_timeline()))
    assert rng.validate(feed), rng.error_log


def test_empty_atom_feed_validates() -> None:
    """An incident with no entries yet gives a valid Atom feed."""
    rng = atom_rng()
    feed = etree.fromstring(render_atom(make_source(), []))
    assert rng.validate(feed), rng.error_log


def test_atom_tombstone_replaces_the_redacted_entry() -> None:
    """A redacted entry becomes an at:deleted-entry with ref, when and the basis."""
    feed = etree.fromstring(render_atom(make_source(), timeline()))
    tombstones = feed.findall(f"{{{TOMBSTONE_NS}}}deleted-entry")
    assert len(tombstones) == 1
    tombstone = tombstones[0]
    assert tombstone.get("ref") == url(3)
    assert tombstone.get("when") == "2026-11-26T06:05:05.123Z"
    assert tombstone.findtext(f"{{{TOMBSTONE_NS}}}comment") == BASIS
    ids = [entry.findtext(f"{{{ATOM_NS}}}id") for entry in feed.iter(f"{{{ATOM_NS}}}entry")]
    assert ids == [url(5), url(4), url(2), url(1)]
    # The tombstone keeps its place in the newest-first timeline.
    children = [child for child in feed if child.tag != f"{{{ATOM_NS}}}link"]
    order = [child.get("ref") or child.findtext(f"{{{ATOM_NS}}}id") for child in children]
    assert order[-5:] == [url(5), url(4), url(3), url(2), url(1)]


def test_atom_with_tombstone_validates_once_foreign_markup_is_set_aside() -> None:
    """The tombstone feed is valid Atom apart from the RFC 6721 elements between entries."""
    # RFC 6721 elements are foreign markup to RFC 4287. Its informative schema admits
    # foreign elements only before the first atom:entry, while RFC 6721 places tombstones
    # anywhere among the entries, so they are removed here and checked in the test above.
    rng = atom_rng()
    feed = etree.fromstring(render_atom(make_source(), timeline()))
    assert not rng.validate(feed), "the schema now admits tombstones between entries"
    for tombstone in feed.findall(f"{{{TOMBSTONE_NS}}}deleted-entry"):
        feed.remove(tombstone)
    assert rng.validate(feed), rng.error_log


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_redacted_text_appears_in_no_feed(fmt: str) -> None:
    """The withheld text is absent from every format, even if the caller left it in body."""
    output = RENDERERS[fmt](make_source(), timeline(), {"szk": {"title": "沙子口山洪"}})
    text = output.decode("utf-8")
    for variant in (text, html.unescape(text), html.unescape(html.unescape(text))):
        assert "WITHHELD" not in variant
        assert "13800138000" not in variant
    assert BASIS in text


def test_rss_and_json_keep_the_redacted_item_with_only_its_notice() -> None:
    """RSS and JSON Feed keep the redacted item, carrying the notice html and no figures."""
    redacted = make_redacted(3, 5)
    redacted["figures"] = {"deaths": 99}
    rss = feedparser.parse(render_rss(make_source(), [redacted]))
    assert rss.entries[0].description == redacted["html"]
    feed = json.loads(render_json_feed(make_source(), [redacted]))
    item = feed["items"][0]
    assert item["content_html"] == redacted["html"]
    assert item["date_modified"] == "2026-11-26T06:05:05.123Z"
    assert item["_broadcaster"]["redacted"] is True
    assert item["_broadcaster"]["figures"] is None


def test_json_feed_validates_against_schema() -> None:
    """The JSON Feed, tombstoned items included, is valid JSON Feed 1.1."""
    validator = json_validator()
    feed = json.loads(render_json_feed(make_source(), timeline()))
    validator.validate(feed)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    extension = feed["items"][1]["_broadcaster"]
    assert extension["seq"] == 4
    assert extension["kind"] == "correction"
    assert extension["hash"] == f"sha256:{104:064x}"
    assert extension["figures"] == {"deaths": 0, "injured": 12, "evacuated": 3400, "x-vehicles": 7}


def test_empty_json_feed_validates() -> None:
    """An incident with no entries yet gives a valid JSON Feed with no items."""
    validator = json_validator()
    feed = json.loads(render_json_feed(make_source(), []))
    validator.validate(feed)
    assert feed["items"] == []


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_xml_illegal_characters_and_markup_survive_a_strict_parser(fmt: str) -> None:
    """Control characters are stripped and ``]]>`` and ``&`` come out escaped."""
    nasty = "A\x00\x01\x0b\x1f\ufffe\uffff\ud800 & B ]]> C"
    entry = make_entry(1, html=f"<p>{nasty}</p>")
    source = make_source(title=f"标题 {nasty}", subtitle=nasty)
    output = RENDERERS[fmt](source, [entry], {"szk": {"title": nasty}})
    root = etree.fromstring(output, etree.XMLParser(recover=False, resolve_entities=False))
    text = "".join(root.itertext())
    assert "<p>A & B ]]> C</p>" in text
    assert "A & B ]]> C · 更新 #1：A & B ]]> C" in text
    assert "]]>" not in output.decode("utf-8")
    assert read_items(fmt, output)[0]["content"] == "<p>A & B ]]> C</p>"


def test_json_feed_strips_characters_utf8_cannot_carry() -> None:
    """A lone surrogate or control character in a body still yields valid UTF-8 JSON."""
    entry = make_entry(1, html="<p>A\x00\ud800 & B</p>")
    feed = json.loads(render_json_feed(make_source(title="T\x01"), [entry]).decode("utf-8"))
    assert feed["title"] == "T"
    assert feed["items"][0]["content_html"] == "<p>A & B</p>"


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_output_is_deterministic(fmt: str) -> None:
    """The same inputs give the same bytes, so ETags and caches stay stable."""
    assert RENDERERS[fmt](make_source(), timeline()) == RENDERERS[fmt](make_source(), timeline())


def test_naive_updated_time_is_refused() -> None:
    """A feed time without a time zone is an error, not a silently wrong timestamp."""
    with pytest.raises(ValueError):
        render_atom(make_source(updated=datetime(2026, 11, 26, 9, 0)), [])


def test_english_feed_uses_english_labels() -> None:
    """With language "en" the kind and figure labels are English."""
    entry = make_entry(
        2, "Figures corrected.", kind="correction", corrects=1, figures={"deaths": 0}
    )
    [item] = read_items("json", render_json_feed(make_source(language="en"), [entry]))
    assert item["title"] == "Correction #2 (corrects #1): Figures corrected."
    assert '<th scope="row">Deaths</th><td>0</td>' in item["content"]
