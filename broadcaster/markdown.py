"""Render an entry's markdown to HTML that cannot carry active content.

Two layers, on purpose: markdown-it-py's ``js-default`` preset with raw HTML
off and a link check that admits only ``http``, ``https``, ``mailto`` and
scheme-less (relative) targets; then ``nh3`` (ammonia) with an allowlist of
tags and attributes, so that a bug in one layer is not enough to publish a
script. Images are disabled: they would make readers' phones fetch
third-party content on a congested network.
"""

from __future__ import annotations

import html as _html
import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_TAGS = {
    "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}


def _validate_link(url: str) -> bool:
    match = _SCHEME.match(url.strip())
    return match is None or match.group(1).lower() in ALLOWED_SCHEMES


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("js-default", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.validateLink = _validate_link  # type: ignore[method-assign]  # markdown-it's own hook
    return md


@lru_cache(maxsize=4096)
def render(body: str) -> str:
    """Return sanitised HTML for ``body`` (markdown source); cached, it is pure."""
    html = _parser().render(body)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=set(ALLOWED_SCHEMES),
        link_rel="noopener nofollow",
        strip_comments=True,
    )


def plain(body: str, limit: int | None = None) -> str:
    """Return the text of ``body`` without markup, whitespace collapsed, cut to ``limit``."""
    text = nh3.clean(render(body), tags=set())
    text = " ".join(text.split())
    text = _html.unescape(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text
