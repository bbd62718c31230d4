"""Turn markup and bytes into plain text: one way for every channel.

``html_to_text`` gives the text a reader sees in an HTML fragment, for feeds,
CAP, pages, the search index, SMS-length titles and ``broadcaster follow``.
The fragment is parsed by ``nh3`` (ammonia, on html5ever), the sanitiser
``broadcaster.markdown`` already trusts, never by a regular expression: it
copes with comments, ``<script>`` and ``<style>`` (their content is dropped),
``>`` inside attributes and broken markup as browsers do. Only the block
elements survive its cleaning, with no ``<`` left in the text (escaped as
``&lt;``), so what remains between ``<`` and ``>`` is exactly those tags,
which end lines.

``decode_bytes`` gives text for bytes a peer sent (a gateway's or a
witness's answer, a fetched checkpoint), to show in a log line or an error:
it never raises unless asked to.
"""

from __future__ import annotations

import codecs
import re
from html import unescape
from typing import Literal

import nh3

#: Elements that end a line of text (table cells too, so two never run together).
BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "blockquote", "pre", "table", "tr", "td", "th", "hr"}
    | {f"h{level}" for level in range(1, 7)}
)
#: Characters XML 1.0 cannot carry at all (and lone surrogates, which UTF-8 cannot).
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
#: Any tag left in nh3's output: only those of ``BLOCK_TAGS`` are.
_TAG = re.compile(r"<[^>]*>")


def xml_safe(text: str | None) -> str:
    """Return ``text`` without the characters XML 1.0 cannot carry at all."""
    return _XML_ILLEGAL.sub("", text or "")


def html_to_text(html: str | None, *, keep_lines: bool = False) -> str:
    """Return the visible text of an HTML fragment, entities decoded, white space collapsed.

    With ``keep_lines`` each block element (paragraph, list item, heading,
    table cell...) and each line break in the text stays on a line of its
    own, empty lines dropped; otherwise everything is on one line. Characters
    XML cannot carry become spaces (they never glue two words), so the
    result can go into a feed or a CAP alert as is.
    """
    # Twice: raw (nh3 cannot even take a lone surrogate), then as character references decode.
    html = _XML_ILLEGAL.sub(" ", html or "")
    cleaned = nh3.clean(html, tags=set(BLOCK_TAGS), attributes={}, strip_comments=True)
    text = _XML_ILLEGAL.sub(" ", unescape(_TAG.sub("\n", cleaned)))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return ("\n" if keep_lines else " ").join(line for line in lines if line)


def decode_bytes(
    data: bytes | bytearray | memoryview | str,
    *,
    limit: int | None = None,
    errors: Literal["replace", "strict"] = "replace",
) -> str:
    """Return ``data`` as text, decoded as UTF-8: what a peer sent, for a log or an error.

    Bytes that are not UTF-8 become U+FFFD (with ``errors="strict"``, raise
    ``UnicodeDecodeError`` instead). With ``limit``, at most the first
    ``limit`` bytes are read, and a character the cut splits is left out
    rather than shown as U+FFFD. A ``str`` (from a client that decodes by
    itself) is returned as is, cut to ``limit`` characters.
    """
    if isinstance(data, str):
        return data if limit is None else data[:limit]
    if limit is None:
        return bytes(data).decode("utf-8", errors)
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    return decoder.decode(bytes(data[:limit]), final=len(data) <= limit)
