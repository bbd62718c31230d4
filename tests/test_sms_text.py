"""Test channels.sms.text: markdown to SMS text, encodings, segment counts, composition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.sms.text import ELLIPSIS, compose, encoding_for, plain_text, segments

HINT = "回TD退订"
LINK = "https://example.cn/e/42"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**紧急**通知：请*立即*撤离", "紧急通知：请立即撤离"),
        ("# 暴雨预警\n\n今夜有暴雨", "暴雨预警\n今夜有暴雨"),
        ("见[通知](https://x.cn/a)", "见通知 (https://x.cn/a)"),
        ("见 <https://x.cn/a>", "见 https://x.cn/a"),
        ("[https://x.cn/a](https://x.cn/a)", "https://x.cn/a"),
        ("[](https://x.cn/a)", "https://x.cn/a"),
        ("1. 带好证件\n2. 关好门窗", "1. 带好证件\n2. 关好门窗"),
        ("3. 三\n4. 四", "3. 三\n4. 四"),
        ("- 甲\n- 乙\n  - 丙", "- 甲\n- 乙\n- 丙"),
        ("a   b\tc\nd", "a b c d"),
        ("第一段\n\n\n\n第二段", "第一段\n第二段"),
        ("> 引用**内容**", "引用内容"),
        ("`code` 与\n\n```\nblock\n```", "code 与\nblock"),
        ("<b>粗体</b> 文字", "粗体 文字"),
        ("A &amp; B", "A & B"),
        ("![图：水位](p.png)", "图：水位"),
        ("---\n\n正文", "正文"),
        ("| 地点 | 水位 |\n|---|---|\n| 桥 | 3.5m |", "地点 水位\n桥 3.5m"),
        ("", ""),
    ],
)
def test_plain_text(markdown: str, expected: str) -> None:
    """Markdown renders to plain text with links, lists and whitespace handled for SMS."""
    assert plain_text(markdown) == expected


@pytest.mark.parametrize(
    "markdown",
    ["**a** _b_ `c` [d](http://e) ![f](g)", "# Title\n\n- *x*\n- __y__\n\n> **z**"],
)
def test_plain_text_leaves_no_markup(markdown: str) -> None:
    """No emphasis, heading, quote or link syntax survives."""
    out = plain_text(markdown)
    for marker in ("**", "__", "`", "](", "![", "# ", "> "):
        assert marker not in out


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Hello world", "gsm7"),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "gsm7"),
        ("€[]{}^~|\\", "gsm7"),
        ("line\nbreak", "gsm7"),
        ("", "gsm7"),
        ("紧急", "ucs2"),
        ("fire 🔥", "ucs2"),
        ("curly ’quote", "ucs2"),
        ("【】", "ucs2"),
        ("…", "ucs2"),
        ("ç", "ucs2"),
    ],
)
def test_encoding_for(text: str, encoding: str) -> None:
    """Only GSM 03.38 basic and extension characters stay GSM-7."""
    assert encoding_for(text) == encoding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("a" * 159 + "€", 2),
        ("a" * 152 + "€" + "a" * 8, 2),  # 162 septets, escape pair moves whole to part 2
        ("a" * 100 + "€" * 40, 2),
        ("a" * 152 + "€" * 77, 3),  # 306 septets, but pairs cannot straddle parts
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("🔥" * 35, 1),
        ("🔥" * 36, 2),
        ("中" * 69 + "🔥", 2),
        ("中" * 68 + "🔥", 1),
        ("a" * 159 + "中", 3),
    ],
)
def test_segments(text: str, expected: int) -> None:
    """Segment counts are exact at the GSM-7 and UCS-2 boundaries, emoji counting two units."""
    assert segments(text) == expected


def _compose(body: str, max_segments: int = 2, **overrides: str) -> str:
    args = {
        "signature": "桃源县应急局",
        "title": "暴雨红色预警",
        "link": LINK,
        "unsubscribe_hint": HINT,
    }
    args |= overrides
    return compose(body_markdown=body, max_segments=max_segments, **args)


def test_compose_short_message_is_verbatim() -> None:
    """A short message is signature, title, body, link and hint, nothing cut."""
    assert _compose("请立即转移。") == f"【桃源县应急局】暴雨红色预警：请立即转移。 {LINK} {HINT}"


@pytest.mark.parametrize("signature", ["桃源县应急局", "【桃源县应急局】", " 桃源县应急局 "])
def test_compose_brackets_signature_once(signature: str) -> None:
    """The signature is wrapped in 【】 exactly once."""
    assert _compose("正文", signature=signature).startswith("【桃源县应急局】暴雨红色预警：")


@pytest.mark.parametrize("max_segments", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "body",
    [
        "据气象台预报，今夜有特大暴雨。请立即转移！" * 30,
        "无标点长文本" * 100,
        "Water level rising, move to higher ground now. " * 30,
        "🔥" * 400,
        "- 第一项\n- 第二项\n" * 40,
    ],
)
def test_compose_fits_and_keeps_fixed_parts(body: str, max_segments: int) -> None:
    """Composition never exceeds max_segments and keeps title, link and hint whole."""
    message = _compose(body, max_segments)
    assert segments(message) <= max_segments
    assert message.startswith("【桃源县应急局】暴雨红色预警：")
    assert message.endswith(f"{ELLIPSIS} {LINK} {HINT}")


def test_compose_prefers_clause_boundary() -> None:
    """A cut body ends at a sentence or clause mark close to the limit, not mid-clause."""
    message = _compose("请沿河群众立即转移，不要涉水过河。" * 20, max_segments=1)
    body = message.split("：", 1)[1].rsplit(f" {LINK}", 1)[0]
    assert body.endswith(("转移" + ELLIPSIS, "过河" + ELLIPSIS))
    assert segments(message) == 1


@pytest.mark.parametrize("padding", range(10, 26))
def test_compose_does_not_cut_inside_decimal_number(padding: int) -> None:
    """An ASCII '.' inside a number is not taken for a sentence end."""
    message = _compose("x" * padding + " 3.5m and rising fast", max_segments=1)
    assert segments(message) == 1
    assert "3" + ELLIPSIS not in message


def test_compose_drops_body_that_cannot_fit() -> None:
    """When only the fixed parts fit, the body is dropped rather than the link or hint."""
    title = "标" * 31  # fits without a body (69 units) but not with "：…" (71)
    message = _compose("正文" * 50, max_segments=1, title=title)
    assert segments(message) == 1
    assert title in message and LINK in message and message.endswith(HINT)


def test_compose_raises_when_fixed_parts_do_not_fit() -> None:
    """Title, link and hint are never cut: too long means ValueError."""
    with pytest.raises(ValueError, match="max_segments=1"):
        _compose("正文", max_segments=1, title="标" * 80)


@pytest.mark.parametrize("bad", [{"body": "a\ud83db"}, {"title": "\udd25"}])
def test_compose_rejects_lone_surrogates(bad: dict[str, str]) -> None:
    """Lone UTF-16 surrogates cannot be encoded for SMS and are refused."""
    body = bad.pop("body", "正文")
    with pytest.raises(ValueError, match="surrogate"):
        _compose(body, **bad)


def test_compose_does_not_split_zwj_sequence() -> None:
    """A ZWJ emoji sequence at the cut is kept whole or dropped whole."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    message = _compose(family * 60, max_segments=1)
    body = message.split("：", 1)[1].rsplit(ELLIPSIS, 1)[0]
    assert body == family * (len(body) // len(family))


@settings(max_examples=300, deadline=None)
@given(body=st.text(), max_segments=st.integers(min_value=1, max_value=4))
def test_compose_property_fits_and_never_splits_surrogates(body: str, max_segments: int) -> None:
    """For any body, the message fits, keeps fixed parts and encodes to valid UTF-16."""
    message = _compose(body, max_segments)
    assert segments(message) <= max_segments
    assert message.startswith("【桃源县应急局】暴雨红色预警")
    assert message.endswith(f"{LINK} {HINT}")
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in message)
    message.encode("utf-16-be")  # strict: raises on any lone surrogate
