"""Render an entry's markdown to HTML that cannot carry active content.

Two layers, on purpose: markdown-it-py's ``js-default`` preset with raw HTML
off and a link check that admits only ``http``, ``https``, ``mailto`` and
scheme-less (relative) targets; then ``nh3`` (ammonia) with an allowlist of
tags and attributes, so that a bug in one layer is not enough to publish a
script. Images are disabled: they would make readers' phones fetch
third-party content on a congested network.

Work is bounded by the input: with markdown-it's ``js-default`` nesting limit
of 100, every unclosed ``[`` made the link-label scan try up to ~100 nested
tokens, so a 20,000-character body of ``[`` took over a second; ``MAX_NESTING``
is CommonMark's own preset value, 20, which makes the cost at most about 20
token steps per character (a worst-case body renders in a fraction of a
second, see tests/test_markdown_bounds.py). Rendering runs where the body is
read or appended (reader threads, the writer thread), and is cached.
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

from .text import html_to_text

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
MAX_NESTING = 20
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_TAGS = {
    "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
#: Table cell alignment travels as a class (site.css), never as an inline style,
#: which the pages' Content-Security-Policy (style-src 'self') would block.
_ALIGN_CLASSES = {f"align-{side}" for side in ("left", "center", "right")}
_CLASSES = {"th": _ALIGN_CLASSES, "td": _ALIGN_CLASSES}


def _validate_link(url: str) -> bool:
    match = _SCHEME.match(url.strip())
    return match is None or match.group(1).lower() in ALLOWED_SCHEMES


def _align_by_class(state: StateCore) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            side = str(token.attrs.pop("style")).removeprefix("text-align:")
            token.attrSet("class", f"align-{side}")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    options = {"html": False, "linkify": False, "typographer": False, "maxNesting": MAX_NESTING}
    md = MarkdownIt("js-default", options)
    md.disable("image")
    md.validateLink = _validate_link  # type: ignore[method-assign]  # markdown-it's own hook
    md.core.ruler.push("align_by_class", _align_by_class)
    return md


@lru_cache(maxsize=4096)
def render(body: str) -> str:
    """Return sanitised HTML for ``body`` (markdown source); cached, it is pure."""
    html = _parser().render(body)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        url_schemes=set(ALLOWED_SCHEMES),
        link_rel="noopener nofollow",
        strip_comments=True,
    )


def plain(body: str, limit: int | None = None) -> str:
    """Return the text of ``body`` without markup, on one line, cut to ``limit``."""
    text = html_to_text(render(body))
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text
