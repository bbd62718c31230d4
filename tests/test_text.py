"""Tests for ``broadcaster.text``: the text a reader sees in HTML, bytes from peers as text."""

from __future__ import annotations

from html import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.markdown import render
from broadcaster.text import decode_bytes, html_to_text, xml_safe


@pytest.mark.parametrize(
    ("html", "one_line", "lines"),
    [
        ("<p>a</p><p>b</p>", "a b", "a\nb"),
        ("a<br>b<br/>c", "a b c", "a\nb\nc"),
        ("<ul><li>甲</li><li>乙</li></ul>", "甲 乙", "甲\n乙"),
        ("<h2>标题</h2>正文", "标题 正文", "标题\n正文"),
        ("<p>更正：<strong>12</strong>人</p>", "更正：12人", "更正：12人"),
        ("<P>Up</P>x", "Up x", "Up\nx"),
        ("<p>  a \t b\u3000 c&nbsp; </p>", "a b c", "a b c"),
        ("", "", ""),
        (None, "", ""),
    ],
)
def test_blocks_end_lines_and_white_space_collapses(html: str | None, one_line: str, lines: str):
    """Block elements separate words (or lines with ``keep_lines``); runs of spaces become one."""
    assert html_to_text(html) == one_line
    assert html_to_text(html, keep_lines=True) == lines


def test_entities_are_decoded_once_and_never_become_tags():
    """``&lt;p&gt;`` is text ``<p>``, not a paragraph; ``&amp;lt;`` stays ``&lt;``."""
    assert html_to_text("<p>a &lt;p&gt; &amp; b &amp;lt;</p>") == "a <p> & b &lt;"


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>x",
        "<style>p{color:red}</style>x",
        "<!-- a comment -->x",
        '<p title="a > b">x</p>',
        "<span onclick='y'>x</span>",
    ],
)
def test_only_visible_text_remains(html: str):
    """Scripts, styles, comments and attributes (even with ``>`` inside) leave no trace."""
    assert html_to_text(html) == "x"


def test_characters_xml_cannot_carry_become_spaces():
    """Control characters and lone surrogates, raw or as references, never reach the text."""
    assert html_to_text("<p>a\x01b\x1b]0;t\x07</p>c&#x1b;d\ud800e") == "a b ]0;t c d e"


def test_rendered_markdown_reads_as_its_author_wrote_it():
    """Lists, tables and code from markdown come out line by line, with no markup."""
    body = (
        "# 通告\n\n- 带好证件\n- 关好门窗\n\n| 地点 | 水位 |\n|---|---|\n| 桥 | 3.5m |\n\n`x < y`"
    )
    assert html_to_text(render(body), keep_lines=True) == (
        "通告\n带好证件\n关好门窗\n地点\n水位\n桥\n3.5m\nx < y"
    )


@given(st.text())
def test_any_text_survives_a_round_trip_through_escaped_html(text: str):
    """Escaped text comes back as its words, whatever it contains."""
    expected = " ".join("".join(c if xml_safe(c) else " " for c in text).split())
    assert html_to_text("<p>" + escape(text) + "</p>") == expected


def test_xml_safe_removes_what_xml_cannot_carry():
    """C0 controls but tab, LF and CR, U+FFFE, U+FFFF and lone surrogates are removed."""
    assert xml_safe("a\x00\x08\t\n\r\x0b\x1f\ufffe\uffff\ud800b") == "a\t\n\rb"
    assert xml_safe(None) == ""


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"0: Accepted for delivery", "0: Accepted for delivery"),
        ("网关错误".encode(), "网关错误"),
        (b"bad \xff byte", "bad \ufffd byte"),
        (bytearray(b"ok"), "ok"),
        (memoryview(b"ok"), "ok"),
        ("already text", "already text"),
        (b"", ""),
    ],
)
def test_decode_bytes_never_raises(data: bytes | bytearray | memoryview | str, expected: str):
    """UTF-8 is decoded; bytes that are not become U+FFFD; text passes through."""
    assert decode_bytes(data) == expected


def test_a_limit_reads_only_that_many_bytes_and_never_ends_in_half_a_character():
    """A cut through a character drops it instead of showing U+FFFD."""
    data = "超时重试".encode()  # 3 bytes a character
    assert decode_bytes(data, limit=7) == "超时"
    assert decode_bytes(data, limit=6) == "超时"
    assert decode_bytes(data, limit=100) == "超时重试"
    assert decode_bytes("超时重试", limit=2) == "超时"


def test_a_body_that_itself_ends_in_half_a_character_shows_it():
    """Within the limit, a truncated last character is the peer's, and shows as U+FFFD."""
    assert decode_bytes("超时".encode()[:-1], limit=100) == "超\ufffd"
    assert decode_bytes("超时".encode()[:-1]) == "超\ufffd"


def test_strict_decoding_refuses_what_is_not_utf8():
    """With ``errors="strict"`` bytes that are not UTF-8 raise ``UnicodeDecodeError``."""
    assert decode_bytes(b"ok", errors="strict") == "ok"
    with pytest.raises(UnicodeDecodeError):
        decode_bytes(b"\xff", errors="strict")
