"""Test channels.sms.commands: keywords residents text to the service number."""

from __future__ import annotations

import pytest

from channels.sms.commands import Command, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("订阅 SZK", Command("subscribe", "SZK")),
        ("订阅SZK", Command("subscribe", "SZK")),
        ("订阅 szk", Command("subscribe", "SZK")),
        ("订阅：SZK", Command("subscribe", "SZK")),
        ("SUB szk", Command("subscribe", "SZK")),
        ("sub SZK", Command("subscribe", "SZK")),
        ("Sub   Szk", Command("subscribe", "SZK")),
        ("DY SZK", Command("subscribe", "SZK")),
        ("dy szk", Command("subscribe", "SZK")),
        ("ＳＵＢ　ｓｚｋ", Command("subscribe", "SZK")),
        ("订阅ＳＺＫ", Command("subscribe", "SZK")),
        ("  订阅 SZK。 ", Command("subscribe", "SZK")),
        ("【订阅 SZK】", Command("subscribe", "SZK")),
        ("订阅 A1", Command("subscribe", "A1")),
    ],
)
def test_subscribe(text: str, expected: Command) -> None:
    """Subscribe keywords in Chinese, Latin and full-width forms yield the upper-cased code."""
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "TD",
        "td",
        "Td",
        "退订",
        "T",
        "t",
        "STOP",
        "stop",
        "UNSUB",
        "N",
        "n",
        "ＴＤ",
        "ｔｄ",
        "ＳＴＯＰ",
        " TD ",
        "TD。",
        "TD!",
        "「退订」",
        "\tTD\n",
        "…TD…",
        "TD\u200b",
    ],
)
def test_unsubscribe(text: str) -> None:
    """Unsubscribe keywords, full-width or wrapped in whitespace and punctuation, unsubscribe."""
    assert parse(text) == Command("unsubscribe", None)


@pytest.mark.parametrize(
    ("text", "code"),
    [("退订 SZK", "SZK"), ("退订szk", "SZK"), ("TD SZK", "SZK"), ("unsub szk", "SZK")],
)
def test_unsubscribe_from_one_county(text: str, code: str) -> None:
    """A long unsubscribe keyword followed by a code unsubscribes from that county only."""
    assert parse(text) == Command("unsubscribe", code)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "？",
        "hello",
        "帮助",
        "订阅",
        "SUB",
        "DY",
        "SUBWAY",
        "DYSZK",
        "SUB SZK EXTRA",
        "订阅 SZK_1",
        "TD退订",
        "请帮我退订",
        "NO",
        "STOPPED",
        "T D",
        "订阅 " + "A" * 17,
    ],
)
def test_help(text: str) -> None:
    """Anything that is not exactly a known command gets help, never a guessed action."""
    assert parse(text) == Command("help", None)


def test_command_is_frozen() -> None:
    """Commands are immutable values."""
    command = parse("TD")
    with pytest.raises(AttributeError):
        command.action = "help"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("订阅 崂山区", Command("subscribe", "崂山区")),
        ("订阅崂山区", Command("subscribe", "崂山区")),
        ("订阅：崂山", Command("subscribe", "崂山")),
        ("订阅 370212", Command("subscribe", "370212")),
        ("SUB 370212", Command("subscribe", "370212")),
        ("sub 370212002", Command("subscribe", "370212002")),
        ("ＳＵＢ　３７０２１２", Command("subscribe", "370212")),
        ("订阅　崂山区。", Command("subscribe", "崂山区")),
        ("订阅 崂山区 全部", Command("subscribe", "崂山区", every=True)),
        ("订阅崂山区全部", Command("subscribe", "崂山区", every=True)),
        ("订阅 370212 全部", Command("subscribe", "370212", every=True)),
        ("SUB 370212 ALL", Command("subscribe", "370212", every=True)),
        ("sub 370212 all", Command("subscribe", "370212", every=True)),
        ("ＳＵＢ　３７０２１２　ＡＬＬ", Command("subscribe", "370212", every=True)),
        ("SUB 崂山区 ALL", Command("subscribe", "崂山区", every=True)),
        ("SUB SZKALL", Command("subscribe", "SZKALL")),
        ("订阅 深圳", Command("subscribe", "深圳")),
        ("退订 崂山区", Command("unsubscribe", "崂山区")),
        ("TD 370212", Command("unsubscribe", "370212")),
        ("退订全部", Command("unsubscribe", None)),
        ("TD ALL", Command("unsubscribe", None)),
    ],
)
def test_areas(text: str, expected: Command) -> None:
    """Areas are named by name, alias or code, in any width, with 全部/ALL for every level."""
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["订阅 全部", "SUB ALL", "订阅 崂山区 其他", "SUB 370212ALL X"])
def test_area_nonsense_gets_help(text: str) -> None:
    """A level word without an area, or extra words after it, gets help."""
    assert parse(text) == Command("help", None)
