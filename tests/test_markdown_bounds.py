"""Rendering work grows linearly with the body, whatever markdown it holds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from markdown_it.parser_inline import ParserInline

from broadcaster.timeline import markdown
from broadcaster.timeline.markdown import _parser, render

#: Bodies that made markdown-it try ~100 nested tokens per character with its default limit.
PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "open brackets": lambda n: "[" * n,
    "open image brackets": lambda n: "![" * (n // 2),
    "nested unclosed labels": lambda n: "[[a]" * (n // 4),
    "brackets on lines": lambda n: "[\n" * (n // 2),
    "brackets around code": lambda n: "[`]`" * (n // 4),
}


def steps(body: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Return how many inline tokens markdown-it tried while rendering ``body``."""
    count = [0]
    original = ParserInline.skipToken

    def counted(self: ParserInline, state: object) -> None:
        count[0] += 1
        original(self, state)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(ParserInline, "skipToken", counted)
        _parser().render(body)
    return count[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_a_20000_character_body_costs_about_20_steps_a_character(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: 20,000 characters of ``[`` took about a second; the work is now bounded by
    about MAX_NESTING steps per character and doubles, not quadruples, with the length."""
    body = PATHOLOGICAL[name](20_000)
    used = steps(body, monkeypatch)
    assert used <= (markdown.MAX_NESTING + 1) * len(body)
    assert steps(PATHOLOGICAL[name](40_000), monkeypatch) <= 2.2 * used


def test_ordinary_markdown_renders_as_before() -> None:
    """Links, emphasis, lists, quotes and tables still render (nesting 20 is plenty)."""
    html = render("- **水位** [详情](https://example.gov.cn/a)\n  - > 引用\n\n|a|\n|-:|\n|1|")
    assert '<a href="https://example.gov.cn/a" rel="noopener nofollow">详情</a>' in html
    assert "<blockquote>" in html and '<td class="align-right">1</td>' in html
