"""Parse keywords that residents text to the service number (MO SMS).

``订阅 SZK`` subscribes to incident ``SZK``; ``订阅 崂山区`` / ``订阅 370212`` / ``SUB 370212``
to an area (new incidents at or above severe), ``订阅 崂山区 全部`` / ``SUB 370212 ALL`` to every
level; ``TD`` / ``退订`` (or ``退订全部``) unsubscribes from everything and ``TD SZK`` /
``退订 崂山区`` from one (the hint every MT carries is ``回TD退订``); anything else gets the
help text. Whether a target is an area or an incident is the service's to decide.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "Command", "parse"]

Action = Literal["subscribe", "unsubscribe", "help"]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SEP = r"[\s:：,，\-]"
# A code (incident or area) or a name with at least one Chinese character; lazy, so that a
# trailing level word is not swallowed ("订阅崂山区全部").
_TARGET = rf"(?P<code>[A-Z0-9]{{1,16}}?|[A-Z0-9·{_CJK}]{{0,29}}?[{_CJK}][A-Z0-9·{_CJK}]{{0,29}}?)"
# 全部 may touch the name; ALL needs a separator ("SUB SZKALL" names code SZKALL).
_EVERY = rf"(?:{_SEP}*(?P<every>全部)|{_SEP}+(?P<every_latin>ALL))?"
_SUBSCRIBE_RE = re.compile(
    # 订阅 may touch the target ("订阅SZK"); Latin keywords need a separator ("SUB SZK",
    # not "SUBSZK")
    rf"(?:订阅{_SEP}*|(?:SUB|DY){_SEP}+){_TARGET}{_EVERY}"
)
_UNSUBSCRIBE_WORDS = frozenset({"TD", "退订", "T", "STOP", "UNSUB", "N"})
#: What names no target but "all of them" ("退订全部", "TD ALL").
_ALL_WORDS = frozenset({"全部", "所有", "ALL"})
# Long unsubscribe keywords may name one incident or area ("退订 SZK", "TD 崂山区");
# "T"/"N" stay bare.
_UNSUBSCRIBE_ONE_RE = re.compile(rf"(?:退订{_SEP}*|(?:TD|STOP|UNSUB){_SEP}+){_TARGET}")


@dataclass(frozen=True, slots=True)
class Command:
    """Hold a parsed MO command.

    ``code`` is the target as typed, normalised (an incident code, an area code, name or
    alias), or ``None``; ``every`` asks for every severity level of an area.
    """

    action: Action
    code: str | None = None
    every: bool = False


def parse(text: str) -> Command:
    """Parse an incoming SMS into a :class:`Command`; unknown input means ``help``.

    The text is NFKC-normalised (full-width ``ＴＤ`` becomes ``TD``), upper-cased, stripped of
    surrounding whitespace, punctuation and symbols, and internal whitespace is collapsed.
    Trade-offs: matching is exact rather than fuzzy (``TD退订`` or a sentence around the keyword
    gets help, never a guessed unsubscribe), and Latin keywords need a separator before the
    target so that words such as ``SUBWAY`` are not read as ``SUB WAY``. Codes are ASCII
    letters and digits, 1-16 characters; names are at most 30 characters.
    """
    normalized = unicodedata.normalize("NFKC", text).upper()
    normalized = " ".join(normalized.split())
    normalized = _strip_punctuation(normalized)
    if normalized in _UNSUBSCRIBE_WORDS:
        return Command("unsubscribe")
    if (match := _SUBSCRIBE_RE.fullmatch(normalized)) and match["code"] not in _ALL_WORDS:
        every = bool(match["every"] or match["every_latin"])
        return Command("subscribe", match["code"], every)
    if match := _UNSUBSCRIBE_ONE_RE.fullmatch(normalized):
        target = match["code"]
        return Command("unsubscribe", None if target in _ALL_WORDS else target)
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
