"""Check key figures: a fixed vocabulary, non-negative integers, ``x-`` custom keys.

Cumulative figures (``deaths``, ``injured``, ``rescued``, ``affected``) only
ever grow, except in a ``correction`` that says why in its body: a number
lowered anywhere else is refused with 422 ``figure_decrease`` and nothing is
appended, so figures cannot be quietly "optimised" after publication.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import Unprocessable

VOCABULARY = ("deaths", "injured", "missing", "evacuated", "sheltered", "rescued", "affected")
CUMULATIVE = frozenset({"deaths", "injured", "rescued", "affected"})
CUSTOM = re.compile(r"^x-[a-z0-9][a-z0-9-]{0,30}$")
MAX_VALUE = 10**12


def check_figures(value: dict[str, Any]) -> dict[str, int]:
    """Return ``value`` if every key is known and every value a non-negative integer."""
    if not value:
        raise Unprocessable(
            "'figures' must not be empty; leave it out", field="figures", code="invalid_value"
        )
    for key, number in value.items():
        if key not in VOCABULARY and not CUSTOM.match(key):
            raise Unprocessable(
                f"unknown figure {key!r}: use {', '.join(VOCABULARY)} or x-<name>",
                code="unknown_figure",
                field=f"figures.{key}",
            )
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= MAX_VALUE:
            raise Unprocessable(
                f"figure {key!r} must be a non-negative integer",
                code="invalid_figure",
                field=f"figures.{key}",
            )
    return dict(sorted(value.items()))
