"""Pre-publication privacy review: find and mask personal data in an update's text.

A pure module (stdlib only, no I/O). ``review(text)`` returns the findings, sorted by start
and non-overlapping; ``mask(text)`` returns the text with every finding replaced by its
masked excerpt.

Detected (``CODES``):

- ``resident_id``: PRC resident ID numbers, 17 digits plus a digit or ``X``/``x``, written
  contiguously or grouped 6-8-4 by one space or dash. The ISO 7064 MOD 11-2 check digit must
  be valid, the birth date (characters 7-14) a real calendar date from 1900 up to today, and
  the first digit (region) 1-8.
- ``mobile``: mainland mobile numbers, 11 digits starting ``1[3-9]``, contiguous or grouped
  3-4-4 by spaces or dashes, optionally prefixed by ``+86``, ``0086`` or ``86`` (with an
  optional space or dash).
- ``bank_card``: 16-19 digits, contiguous or in groups of 4 separated by spaces or dashes,
  passing the Luhn check, and not already claimed as a resident ID.
- ``email``: ``local@domain.tld`` with an ASCII local part and domain; Chinese text may touch
  the address on either side (``联系zhangsan@163.com获取``).
- ``vehicle_plate``: mainland plates, a province abbreviation, an upper-case letter, an
  optional ``·`` or space, then 5 letters/digits (6 for new-energy plates) including at
  least one digit.

Where candidates overlap, the first in this order wins: email, resident_id, bank_card, mobile,
vehicle_plate (so ``13812345678@qq.com`` is one e-mail finding).

Deliberately not detected: public service numbers (110, 119, 120, 12345, 95119, ...),
landlines with area codes (``0532-88888888``, ``(0532) 8888 8888``), counts, years and dates
(``2026年11月26日``, ``3400人``), 11-digit numbers not starting ``1[3-9]``, IDs with a wrong
check digit, impossible birth date or region, card-length numbers failing Luhn, and any
digits that are part of a longer digit run (an ID, card or mobile number must not be
preceded or followed directly by another digit). Names and addresses are not detected.

Full-width forms are found too: detection runs on a copy in which full-width ASCII
(U+FF01..U+FF5E) is mapped to ASCII, every Unicode space separator (ideographic space U+3000,
no-break space U+00A0, thin spaces, ...) to a space and hyphen-like dashes (U+2010..U+2013,
U+2212, U+FE63) to ``-``; text pasted from word processors and chat apps carries these. The
invisible characters that copy-paste leaves inside numbers (zero-width space and joiners, word
joiner, BOM, soft hyphen) are skipped while matching, so ``138<ZWSP>1234<ZWSP>5678`` is one
mobile number. Offsets are Python ``str`` indexes into the ORIGINAL text (a finding's span
covers any skipped characters inside it), and excerpts are built from the ORIGINAL characters
without the skipped ones (a full-width number stays full-width where it is kept).

Masking rules (the excerpt is the masked match; masked characters become ASCII ``*``,
separators such as spaces, dashes and ``·`` are kept as they are):

- ``resident_id``: keep the first 4 and last 4 characters: ``3702**********123X``.
- ``mobile``: keep any prefix as written, and the first 3 and last 4 digits of the national
  number: ``138****5678``, ``+86 138 **** 5678``.
- ``bank_card``: keep the first 4 and last 4 digits: ``6222 **** **** 1234``.
- ``email``: keep the first character of the local part, then ``***``, then ``@domain``:
  ``z***@example.com`` (the only rule that changes the length).
- ``vehicle_plate``: keep the province and the letter: ``鲁B·*****``.

The case table in tests/test_disclosure.py grows with every bug: each missed or false
finding becomes a new row there before it is fixed here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

CODES: tuple[str, ...] = ("resident_id", "mobile", "bank_card", "email", "vehicle_plate")


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its code, its span in the original text, a masked excerpt."""

    code: str
    start: int
    end: int
    excerpt: str

    def to_dict(self) -> dict:
        """Return the finding as a JSON-ready dict."""
        return {"code": self.code, "start": self.start, "end": self.end, "excerpt": self.excerpt}


_SPACES = "\u00a0\u1680\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
_NORMALISE = (
    {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
    | {ord(c): ord(" ") for c in _SPACES}
    | {ord(c): ord("-") for c in "\u2010\u2011\u2012\u2013\u2212\ufe63"}
)
_IGNORABLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

_ID_RE = re.compile(r"(?<!\d)\d{6}([ -]?)\d{8}\1\d{3}[\dXx](?!\d)", re.ASCII)
_MOBILE_RE = re.compile(
    r"(?<![\d+])(?P<prefix>(?:\+86|0086|86)[ -]?)?(?P<number>1[3-9]\d([ -]?)\d{4}\3\d{4})(?!\d)",
    re.ASCII,
)
_CARD_RE = re.compile(
    r"(?<!\d)(?:\d{16,19}|\d{4}([ -])\d{4}(?:\1\d{4}){2}(?:\1\d{1,3})?)(?!\d)", re.ASCII
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z0-9][A-Za-z0-9._%+-]*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
_PLATE_RE = re.compile(rf"[{_PROVINCES}][A-Z][· ]?([A-Z0-9]{{5,6}})(?![A-Za-z0-9])")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _valid_resident_id(chars: str, today: date) -> bool:
    """Check region digit, birth date and the MOD 11-2 check character of an 18-char ID."""
    if not "1" <= chars[0] <= "8":
        return False
    try:
        born = date(int(chars[6:10]), int(chars[10:12]), int(chars[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > today:
        return False
    total = sum(int(c) * w for c, w in zip(chars[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == chars[17].upper()


def _luhn_ok(digits: str) -> bool:
    """Return True when the digit string passes the Luhn check."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_alnum(original: str, keep_head: int, keep_tail: int) -> str:
    """Mask letters/digits of ``original`` except the first and last few; keep separators."""
    positions = [i for i, c in enumerate(original) if c.isalnum()]
    hidden = set(positions[keep_head : len(positions) - keep_tail])
    return "".join("*" if i in hidden else c for i, c in enumerate(original))


# Each detector yields (start, end, excerpt) candidates from the normalised text; the
# excerpt is built from the original text at the same positions.
_Candidates = Iterator[tuple[int, int, str]]


def _emails(norm: str, text: str, today: date) -> _Candidates:
    for m in _EMAIL_RE.finditer(norm):
        at = norm.index("@", m.start())
        yield m.start(), m.end(), text[m.start()] + "***" + text[at : m.end()]


def _resident_ids(norm: str, text: str, today: date) -> _Candidates:
    for m in _ID_RE.finditer(norm):
        chars = m.group().replace(" ", "").replace("-", "")
        if _valid_resident_id(chars, today):
            yield m.start(), m.end(), _mask_alnum(text[m.start() : m.end()], 4, 4)


def _bank_cards(norm: str, text: str, today: date) -> _Candidates:
    for m in _CARD_RE.finditer(norm):
        if _luhn_ok(m.group().replace(" ", "").replace("-", "")):
            yield m.start(), m.end(), _mask_alnum(text[m.start() : m.end()], 4, 4)


def _mobiles(norm: str, text: str, today: date) -> _Candidates:
    for m in _MOBILE_RE.finditer(norm):
        start, split = m.start(), m.start("number")
        yield start, m.end(), text[start:split] + _mask_alnum(text[split : m.end()], 3, 4)


def _plates(norm: str, text: str, today: date) -> _Candidates:
    for m in _PLATE_RE.finditer(norm):
        if any(c.isdigit() for c in m.group(1)):
            yield m.start(), m.end(), text[m.start() : m.start(1)] + "*" * len(m.group(1))


# Priority order: an earlier detector's finding wins any overlap with a later one.
_DETECTORS: tuple[tuple[str, Callable[[str, str, date], _Candidates]], ...] = (
    ("email", _emails),
    ("resident_id", _resident_ids),
    ("bank_card", _bank_cards),
    ("mobile", _mobiles),
    ("vehicle_plate", _plates),
)


def review(text: str) -> list[Finding]:
    """Return the personal data found in ``text``, sorted by start and non-overlapping."""
    # ``where[i]`` is the index in ``text`` of the i-th character that is not skipped.
    where = [i for i, c in enumerate(text) if c not in _IGNORABLE]
    visible = "".join(text[i] for i in where)
    norm = visible.translate(_NORMALISE)
    today = date.today()
    findings: list[Finding] = []
    for code, detect in _DETECTORS:
        for start, end, excerpt in detect(norm, visible, today):
            start, end = where[start], where[end - 1] + 1
            if all(end <= f.start or start >= f.end for f in findings):
                findings.append(Finding(code, start, end, excerpt))
    return sorted(findings, key=lambda f: f.start)


def mask(text: str) -> str:
    """Return ``text`` with every finding replaced by its masked excerpt."""
    for f in reversed(review(text)):
        text = text[: f.start] + f.excerpt + text[f.end :]
    return text
