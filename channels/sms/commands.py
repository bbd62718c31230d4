"""Parse keywords that residents text to the service number (MO SMS).

``订阅 SZK`` subscribes to county ``SZK``; ``TD`` / ``退订`` unsubscribes (the hint every MT
carries is ``回TD退订``); anything else gets the help text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "Command", "parse"]

Action = Literal["subscribe", "unsubscribe", "help"]

_CODE = r"(?P<code>[A-Z0-9]{1,16})"
_SUBSCRIBE_RE = re.compile(
    # 订阅 may touch the code ("订阅SZK"); Latin keywords need a separator ("SUB SZK", not "SUBSZK")
    rf"(?:订阅[\s:：,，\-]*|(?:SUB|DY)[\s:：,，\-]+){_CODE}"
)
_UNSUBSCRIBE_WORDS = frozenset({"TD", "退订", "T", "STOP", "UNSUB", "N"})
# Long unsubscribe keywords may name one county ("退订 SZK", "TD SZK"); "T"/"N" stay bare.
_UNSUBSCRIBE_CODE_RE = re.compile(rf"(?:退订[\s:：,，\-]*|(?:TD|STOP|UNSUB)[\s:：,，\-]+){_CODE}")


@dataclass(frozen=True, slots=True)
class Command:
    """Hold a parsed MO command; ``code`` is the upper-cased county code or ``None``."""

    action: Action
    code: str | None = None


def parse(text: str) -> Command:
    """Parse an incoming SMS into a :class:`Command`; unknown input means ``help``.

    The text is NFKC-normalised (full-width ``ＴＤ`` becomes ``TD``), upper-cased, stripped of
    surrounding whitespace, punctuation and symbols, and internal whitespace is collapsed.
    Trade-offs: matching is exact rather than fuzzy (``TD退订`` or a sentence around the keyword
    gets help, never a guessed unsubscribe), and Latin keywords need a separator before the code
    so that words such as ``SUBWAY`` are not read as ``SUB WAY``. County codes are ASCII letters
    and digits, 1-16 characters.
    """
    normalized = unicodedata.normalize("NFKC", text).upper()
    normalized = " ".join(normalized.split())
    normalized = _strip_punctuation(normalized)
    if normalized in _UNSUBSCRIBE_WORDS:
        return Command("unsubscribe")
    if match := _SUBSCRIBE_RE.fullmatch(normalized):
        return Command("subscribe", match["code"])
    if match := _UNSUBSCRIBE_CODE_RE.fullmatch(normalized):
        return Command("unsubscribe", match["code"])
    return Command("help")


def _strip_punctuation(text: str) -> str:
    def junk(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch)[0] in "PSZC"

    start, end = 0, len(text)
    while start < end and junk(text[start]):
        start += 1
    while end > start and junk(text[end - 1]):
        end -= 1
    return text[start:end]
