"""Turn markdown into SMS text, count GSM-7/UCS-2 segments and compose bounded messages.

Everything here is pure and synchronous, so it can be used from request handlers, the admin
preview and tests alike. Segment counts follow what Kannel 1.4.5 actually does when it splits a
long message (8-bit concatenation UDH, 6 octets): 160/153 septets for GSM-7 and 70/67 UTF-16
code units for UCS-2.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "ELLIPSIS",
    "Encoding",
    "compose",
    "encoding_for",
    "plain_text",
    "segments",
    "septets",
    "utf16_units",
]

Encoding = Literal["gsm7", "ucs2"]

#: GSM 03.38 default alphabet (without ESC, 0x1B, which only introduces the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: each costs two septets (ESC + code).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

ELLIPSIS = "…"
#: Characters after which a body may be cut; ASCII ones only count when followed by a space, so
#: "3.5" or "example.com" are never treated as a sentence end.
_CJK_BREAKS = "。！？；，、\n"
_ASCII_BREAKS = ",.;!?"
_TRAILING_PUNCT = _CJK_BREAKS + _ASCII_BREAKS + "：:、 \t"
_ZWJ = "\u200d"

_md = MarkdownIt("js-default")
# Raw HTML is not parsed by the "js-default" preset (html=False), so tags reach us as text
# tokens. They are cut out of that text by a pattern, not by an HTML parser
# (``broadcaster.text.html_to_text``): a parser would swallow everything after a stray "<" and
# a letter ("flow<normal"), and the text is never HTML, only markdown someone typed tags into.
_TAG_RE = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>", re.DOTALL)
_SPACE_RE = re.compile(r"[^\S\n]+")


# --------------------------------------------------------------------------------------------
# markdown -> plain text
# --------------------------------------------------------------------------------------------


def plain_text(markdown: str) -> str:
    """Render markdown as plain text for an SMS.

    Formatting is dropped; link text is kept and the URL appended in parentheses only when it
    differs from the text; list items get their own line with a simple ``1.`` / ``-`` prefix (no
    indentation for nesting, which would only cost characters); headings, paragraphs, code blocks
    and table rows become lines; runs of whitespace collapse to one space and empty lines are
    dropped. Trade-offs: tags typed into the markdown are stripped by a conservative regex (see
    ``_TAG_RE``), images keep only their alt text, and a bare URL in the text is left as is
    (linkify is off in "js-default").
    """
    lines: list[str] = []
    lists: list[list[int]] = []  # per open list: [ordered (0/1), next number]
    prefix = ""
    row: list[str] | None = None

    def emit(text: str) -> None:
        nonlocal prefix
        for raw in text.split("\n"):
            line = _SPACE_RE.sub(" ", raw).strip()
            if line:
                lines.append(prefix + line)
                prefix = ""

    for tok in _md.parse(markdown):
        kind = tok.type
        if kind == "bullet_list_open":
            lists.append([0, 0])
        elif kind == "ordered_list_open":
            lists.append([1, int(tok.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            if lists and lists[-1][0]:
                prefix = f"{lists[-1][1]}. "
                lists[-1][1] += 1
            else:
                prefix = "- "
        elif kind == "list_item_close":
            prefix = ""
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close":
            emit(" ".join(cell for cell in (row or []) if cell))
            row = None
        elif kind == "inline":
            text = _inline_text(tok.children or [])
            if row is not None:
                row.append(_SPACE_RE.sub(" ", text.replace("\n", " ")).strip())
            else:
                emit(text)
        elif kind in ("fence", "code_block"):
            emit(tok.content)
    return "\n".join(lines)


def _inline_text(children: Sequence[Token]) -> str:
    out: list[str] = []
    links: list[tuple[str, int]] = []
    for child in children:
        kind = child.type
        if kind == "text":
            out.append(_TAG_RE.sub("", child.content))
        elif kind == "code_inline":
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "image":
            out.append(_inline_text(child.children or []))
        elif kind == "link_open":
            links.append((str(child.attrGet("href") or ""), len(out)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:]).strip()
            if href and not _same_target(label, href):
                out.append(f" ({href})" if label else href)
    return "".join(out)


def _same_target(label: str, href: str) -> bool:
    candidates = {href, _md.normalizeLinkText(href)}
    for scheme in ("mailto:", "tel:"):
        candidates |= {c.removeprefix(scheme) for c in list(candidates)}
    candidates |= {c.rstrip("/") for c in list(candidates)}
    return label in candidates or label.rstrip("/") in candidates


# --------------------------------------------------------------------------------------------
# encoding and segments
# --------------------------------------------------------------------------------------------


def encoding_for(text: str) -> Encoding:
    """Return ``"gsm7"`` if every character is in the GSM 03.38 alphabet, else ``"ucs2"``.

    Trade-off: no national language shift tables and no lossy transliteration (e.g. "’" to "'"),
    so a single non-GSM character moves the whole message to UCS-2, exactly as Kannel does.
    """
    allowed = GSM7_BASIC | GSM7_EXTENSION
    return "gsm7" if all(ch in allowed for ch in text) else "ucs2"


def septets(text: str) -> int:
    """Count GSM-7 septets (extension characters cost two); the text must be GSM-7."""
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def utf16_units(text: str) -> int:
    """Count UTF-16 code units, so a character outside the BMP (emoji) counts two."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def segments(text: str) -> int:
    """Return how many SMS parts ``text`` needs (at least 1; an empty SMS is still one SMS).

    GSM-7: 160 septets fit one SMS, otherwise parts of 153 septets; an escape pair is never
    split across parts (Kannel's ``charset_gsm_truncate`` does the same), which can cost one
    more part than plain division. UCS-2: 70 code units fit one SMS, otherwise ``ceil(units/67)``;
    Kannel splits UCS-2 at octet boundaries and may split a surrogate pair between parts, so
    plain division matches what the gateway bills.
    """
    if encoding_for(text) == "gsm7":
        total = septets(text)
        if total <= GSM7_SINGLE:
            return 1
        parts, used = 1, 0
        for ch in text:
            cost = 2 if ch in GSM7_EXTENSION else 1
            if used + cost > GSM7_PART:
                parts, used = parts + 1, 0
            used += cost
        return parts
    units = utf16_units(text)
    if units <= UCS2_SINGLE:
        return 1
    return -(-units // UCS2_PART)


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------


def compose(
    *,
    signature: str,
    title: str,
    body_markdown: str,
    link: str,
    unsubscribe_hint: str,
    max_segments: int,
) -> str:
    """Build the SMS ``【signature】title：body link hint`` within ``max_segments`` parts.

    Only the body is shortened: it is cut at a character boundary (never inside a surrogate
    pair, before a combining mark or around a zero-width joiner), preferably just after a
    sentence or clause mark (``。！？；，,.;``) close to the limit, else not inside a Latin word
    or number, and ends with ``…``. If even
    an empty body does not fit, the body is dropped; if signature, title, link and hint alone do
    not fit, ``ValueError`` is raised. Empty title/link/hint parts are omitted with their
    separator. Trade-offs: ``…`` and ``【】`` are not GSM-7, so a composed message is always
    UCS-2 (70/67 units per part) even for an all-ASCII text; and the cut search costs
    O(n log n) segment counts, which is negligible for SMS-sized input.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    signature = _no_lone_surrogates(signature.strip(), "signature")
    if not signature:
        raise ValueError("signature must not be empty")
    if not (signature.startswith("【") and signature.endswith("】")):
        signature = f"【{signature.strip('【】')}】"
    title = _no_lone_surrogates(" ".join(title.split()), "title")
    link = _no_lone_surrogates(link.strip(), "link")
    hint = _no_lone_surrogates(unsubscribe_hint.strip(), "unsubscribe_hint")
    body = plain_text(_no_lone_surrogates(body_markdown, "body_markdown"))

    def build(body_text: str) -> str:
        head = signature + title
        if body_text:
            head += ("：" if title else "") + body_text
        return " ".join(part for part in (head, link, hint) if part)

    def fits(message: str) -> bool:
        return segments(message) <= max_segments

    if fits(message := build(body)):
        return message
    if not fits(build(ELLIPSIS)):
        if fits(message := build("")):
            return message
        raise ValueError(
            f"signature, title, link and unsubscribe hint alone need {segments(message)} "
            f"SMS segments, more than max_segments={max_segments}"
        )

    def cut(k: int) -> str:
        return body[:k].rstrip() + ELLIPSIS

    lo, hi = 0, len(body)  # invariant: cut(lo) fits, cut(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(build(cut(mid))):
            lo = mid
        else:
            hi = mid
    k = _safe_boundary(body, lo)
    window = max(8, min(k // 5, 30))  # look back at most ~30 characters
    for i in range(k - 1, max(k - window, 0) - 1, -1):
        ch = body[i]
        nxt = body[i + 1] if i + 1 < len(body) else " "
        if ch in _CJK_BREAKS or (ch in _ASCII_BREAKS and nxt.isspace()):
            shortened = body[: i + 1].rstrip().rstrip(_TRAILING_PUNCT)
            if shortened:
                return build(shortened + ELLIPSIS)
            break
    shortened = body[:k].rstrip()
    if 0 < k < len(body) and _in_latin_word(body[k - 1]) and _in_latin_word(body[k]):
        # Do not end on half a Latin word or number ("3…" for "3.5m"): back off to a space.
        for i in range(k - 1, max(k - window, 0), -1):
            if body[i].isspace():
                shortened = body[:i].rstrip()
                break
    return build(shortened + ELLIPSIS if shortened else ELLIPSIS)


def _in_latin_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in ".,'-_%/:")


def _safe_boundary(text: str, k: int) -> int:
    """Move cut index ``k`` left until it does not separate a character from its extenders."""
    while 0 < k < len(text) and (_is_extender(text[k]) or text[k - 1] == _ZWJ):
        k -= 1
    return k


def _is_extender(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.combining(ch) != 0
        or ch == _ZWJ
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences
        or 0xDC00 <= cp <= 0xDFFF  # a low surrogate never starts a character
    )


def _no_lone_surrogates(text: str, name: str) -> str:
    """Join UTF-16 surrogate pairs into real characters; reject lone surrogates."""
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError as exc:
        index = exc.start // 2
        raise ValueError(f"{name} contains a lone UTF-16 surrogate at index {index}") from exc
