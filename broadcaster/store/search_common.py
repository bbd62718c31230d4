"""Hold what both search dialects share: the ranking window, the time budget, a hit, the timeout.

``search`` picks the dialect (``search_sqlite`` or ``search_postgres``) and
both of those use these definitions, so they live apart from all three.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import Unavailable

#: How many of the most recent matches are ranked (older ones are not returned).
WINDOW = 1000
#: Seconds one search may take before it is abandoned.
BUDGET = 2.0


class SearchTimeout(Unavailable):
    """A search ran past ``BUDGET`` and was stopped."""

    default_code = "search_timeout"

    def __init__(self) -> None:
        super().__init__(
            f"this search took longer than {BUDGET:g} s and was stopped; use longer or more"
            " specific terms, or search one incident"
        )
        self.headers["Retry-After"] = "5"


class Hit(NamedTuple):
    """One matching entry, as ``find`` returns it (the caller makes the snippet)."""

    incident: str
    seq: int
    posted_at: str
    title: str
    text: str
