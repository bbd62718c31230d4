"""Search on PostgreSQL: pg_trgm for terms of 3+ characters, character pairs for shorter ones.

One table, ``search_rows``, one row per indexed entry (migration ``0002_search``):

- ``doc`` is the incident's title and the entry's visible text, lower-cased
  (in Python, as the query terms are) and joined by a newline, which no term
  contains. Every term is ``doc LIKE '%term%'`` (its wildcards
  escaped), an exact substring test. For a term with a run of 3 or more
  letters/digits, a GIN ``gin_trgm_ops`` index answers that LIKE (pg_trgm
  takes CJK characters as word characters under a UTF-8 locale such as
  ``C.UTF-8``: ``show_trgm('崂山区沙子口')`` gives seven trigrams).
- ``grams`` holds every character of ``doc`` and every adjacent pair (no white
  space), as integers: a character is its code point, a pair is folded into
  the range above all code points. pg_trgm cannot answer a term of 1 or 2
  characters (``山洪``, ``雨``) from its index, so such a term also asks
  ``grams @> ARRAY[gram]`` of a GIN index; the LIKE drops the rare row whose
  pair only folds to the same integer. Integers keep the column to about 4
  bytes a character.

All terms must match (AND). The ``WINDOW`` most recent matches (by row id,
which grows in commit order since writes are serialised site-wide) are ranked
by BM25's term-frequency part, a title occurrence weighing half a text one, as
SQLite's ``bm25(…, 0.5, 1.0)`` does; every ranked row contains every term, so
the IDF factor would not reorder them and is left out, and occurrences are
counted up to 3 in the text and 1 in the title (where BM25 has nearly
saturated), with LIKE, which is what keeps ranking 1000 rows cheap. The planner chooses
between walking the id index backwards (common terms: it stops after
``WINDOW`` matches) and the GIN indexes (rare terms).

A redaction deletes the row in its own transaction; after the commit
``broadcaster.store.redaction.scrub`` VACUUMs ``search_rows`` (every
``search_*`` table) so the dead row version goes too. There is nothing to
merge as FTS5 must.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import psycopg

from .pg_conn import translate
from .search_common import WINDOW, Hit, SearchTimeout

_RUN = re.compile(r"[^\W_]+")
_PAIR_BASE = 0x110000  # above every code point
_PAIR_RANGE = 2**31 - 1 - _PAIR_BASE


def document(title: str, text: str) -> str:
    """Return what terms are matched against: title and text, lower case, one line each."""
    return " ".join(title.split()).lower() + "\n" + text.lower()


def _pair(a: str, b: str) -> int:
    return _PAIR_BASE + (ord(a) * _PAIR_BASE + ord(b)) % _PAIR_RANGE


def grams(doc: str) -> list[int]:
    """Return the integer grams of ``doc``: its characters and adjacent pairs, no white space."""
    found = {ord(c) for c in doc if not c.isspace()}
    found.update(
        _pair(a, b) for a, b in zip(doc, doc[1:], strict=False) if not (a.isspace() or b.isspace())
    )
    return sorted(found)


def _term_gram(run: str) -> int:
    return ord(run) if len(run) == 1 else _pair(run[0], run[1])


def index(conn: Any, incident: str, seq: int, posted_at: str, title: str, text: str) -> None:
    """Add one entry to ``search_rows`` (inside the caller's transaction)."""
    doc = document(title, text)
    conn.execute(
        "INSERT INTO search_rows (incident, seq, posted_at, text, doc, grams)"
        " VALUES (?, ?, ?, ?, ?, CAST(? AS integer[])) ON CONFLICT (incident, seq) DO NOTHING",
        (incident, seq, posted_at, text, doc, grams(doc)),
    )


def unindex(conn: Any, incident: str, seq: int) -> None:
    """Delete entry ``seq`` of ``incident`` from ``search_rows``."""
    conn.execute("DELETE FROM search_rows WHERE incident = ? AND seq = ?", (incident, seq))


def _escaped(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _term_frequency(n: int, term: str, params: dict[str, Any]) -> str:
    """Return SQL for term ``n``'s frequency in row ``m``; add its patterns to ``params``.

    Counted with LIKE, far cheaper per row than ``replace``: occurrences in the
    text (after the newline) up to 3, where BM25 has nearly saturated, plus
    half an occurrence when the title (before it) holds the term.
    """
    esc = _escaped(term)
    patterns = [f"%{esc}%\n%"] + ["%\n%" + "%".join([esc] * k) + "%" for k in (1, 2, 3)]
    names = [f"tf{n}_{k}" for k in range(4)]
    params.update(zip(names, patterns, strict=True))
    title, *text = (f"CAST(m.doc LIKE :{name} AS integer)" for name in names)
    return f"CAST({' + '.join(text)} AS float8) + 0.5 * {title} AS tf{n}"


def _score(count: int) -> str:
    """Return the SQL BM25 score of row ``s`` for ``count`` terms (k1 = 1.2, b = 0.75)."""
    norm = "1.2 * (0.25 + 0.75 * s.dl / a.avgdl)"
    return " + ".join(f"s.tf{n} * 2.2 / (s.tf{n} + {norm})" for n in range(count))


def statement(
    terms: list[str], incident: str | None, limit: int
) -> tuple[str, dict[str, Any]] | None:
    """Return the query for ``terms`` and its parameters; None if no term has a letter or digit."""
    conditions: list[str] = []
    params: dict[str, Any] = {"window": WINDOW, "limit": limit}
    short: list[int] = []
    indexed = False
    for n, term in enumerate(terms):
        runs = _RUN.findall(term)
        conditions.append(f"doc LIKE :like{n}")
        params[f"like{n}"] = f"%{_escaped(term)}%"
        if any(len(run) >= 3 for run in runs):
            indexed = True
        else:
            short.extend(_term_gram(run) for run in runs)
    if not short and not indexed:
        return None  # nothing to look up in an index, as on SQLite
    if short:
        conditions.append("grams @> CAST(:grams AS integer[])")
        params["grams"] = sorted(set(short))
    if incident:
        conditions.append("incident = :incident")
        params["incident"] = incident
    counts = "".join(", " + _term_frequency(n, term, params) for n, term in enumerate(terms))
    sql = (
        "WITH m AS (SELECT id, incident, seq, posted_at, text, doc FROM search_rows"
        f" WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT :window),"
        f" s AS (SELECT m.id, m.incident, m.seq, m.posted_at, m.text,"
        f" CAST(char_length(m.doc) AS float8) AS dl{counts} FROM m),"
        " a AS (SELECT greatest(avg(dl), 1) AS avgdl FROM s)"
        " SELECT s.incident, s.seq, s.posted_at, i.title, s.text"
        " FROM s CROSS JOIN a JOIN incidents i ON i.id = s.incident"
        " WHERE NOT EXISTS (SELECT 1 FROM redactions x"
        " WHERE x.incident = s.incident AND x.seq = s.seq)"
        f" ORDER BY {_score(len(terms))} DESC, s.id DESC LIMIT :limit"
    )
    return sql, params


@contextlib.contextmanager
def time_budget(conn: Any, seconds: float) -> Iterator[None]:
    """Cancel the statements run inside this block after ``seconds`` (one transaction)."""
    try:
        with conn.raw.transaction():
            milliseconds = max(1, int(seconds * 1000))
            conn.raw.execute(f"SET LOCAL statement_timeout = {milliseconds}")
            yield
    except psycopg.errors.QueryCanceled:
        raise SearchTimeout() from None


def find(
    conn: Any, terms: list[str], incident: str | None, limit: int
) -> tuple[list[Hit], tuple[str, ...]]:
    """Return the best ``limit`` matches of ``terms`` and the strings to highlight."""
    built = statement(terms, incident, limit)
    if built is None:
        return [], ()
    sql, params = built
    # Never a generic plan: whether to walk the id index or the GIN indexes
    # depends on how common the terms are, which only the values tell.
    rows = conn.raw.execute(translate(sql), params, prepare=False).fetchall()
    hits = [Hit(r["incident"], r["seq"], r["posted_at"], r["title"], r["text"]) for r in rows]
    return hits, tuple(terms)
