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
