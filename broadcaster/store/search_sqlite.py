"""Search on SQLite: two FTS5 indexes over the same rows (see ``broadcaster.search.service``).

- ``search_text`` (trigram tokenizer) stores the entry's visible text and its
  incident's title. A query whose terms all have 3 or more characters is a
  substring match there.
- ``search_pairs`` (contentless, unicode61) holds every overlapping pair of
  letters/digits of the same text plus the last character of each run, so
  terms of 1 or 2 characters (``山洪``, ``雨``) are substring matches too: a
  query with such a term goes there whole, longer terms as phrases of their
  pairs. The trigram index cannot answer short terms, and SQLite 3.40's LIKE
  over a trigram table silently finds nothing for two CJK characters (six
  UTF-8 bytes pass its length test, no trigram matches).

The pair tokens written to ``search_pairs`` and the pair phrases queried from
it are both made here, by the same rule, so they cannot drift apart.

FTS5 only marks deleted postings until segments merge, so after a redaction
``merge_step`` merges both indexes a bounded amount of work at a time until
the withheld text's postings are gone from the file as well.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .search_common import WINDOW, Hit, SearchTimeout

#: SQLite virtual-machine steps between two looks at the clock.
_PROGRESS_STEPS = 1000

MERGE_PAGES = 200
_RUN = re.compile(r"[^\W_]+")


def pairs(text: str) -> str:
    """Return the pair tokens of ``text``: each adjacent pair in a run, then its last char."""
    tokens: list[str] = []
    for run in _RUN.findall(text.lower()):
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        tokens.append(run[-1])
    return " ".join(tokens)


def index(
    conn: sqlite3.Connection, incident: str, seq: int, posted_at: str, title: str, text: str
) -> None:
    """Add one entry's text to both indexes (inside the caller's transaction)."""
    row_id = conn.execute(
        "INSERT INTO search_rows (incident, seq, posted_at) VALUES (?, ?, ?)"
        " ON CONFLICT (incident, seq) DO NOTHING RETURNING id",
        (incident, seq, posted_at),
    ).fetchone()
    if row_id is None:
        return
    conn.execute(
        "INSERT INTO search_text (rowid, title, text) VALUES (?, ?, ?)", (row_id[0], title, text)
    )
    conn.execute(
        "INSERT INTO search_pairs (rowid, title, text) VALUES (?, ?, ?)",
        (row_id[0], pairs(title), pairs(text)),
    )


def unindex(conn: sqlite3.Connection, incident: str, seq: int) -> None:
    """Remove entry ``seq`` of ``incident`` from both indexes; a no-op if it is not there."""
    row = conn.execute(
        "SELECT id FROM search_rows WHERE incident = ? AND seq = ?", (incident, seq)
    ).fetchone()
    if row is None:
        return
    stored = conn.execute(
        "SELECT title, text FROM search_text WHERE rowid = ?", (row[0],)
    ).fetchone()
    if stored is not None:
        # A contentless FTS5 table forgets a row only when told its exact tokens again.
        conn.execute(
            "INSERT INTO search_pairs (search_pairs, rowid, title, text)"
            " VALUES ('delete', ?, ?, ?)",
            (row[0], pairs(stored[0]), pairs(stored[1])),
        )
        conn.execute("DELETE FROM search_text WHERE rowid = ?", (row[0],))
    conn.execute("DELETE FROM search_rows WHERE id = ?", (row[0],))


def merge_step(conn: sqlite3.Connection) -> bool:
    """Merge a bounded share of both indexes; return True while there was work to do."""
    worked = False
    for table in ("search_text", "search_pairs"):
        before = conn.total_changes
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('merge', -{MERGE_PAGES})")
        worked |= conn.total_changes - before >= 2  # FTS5's documented "no work" signal
    return worked


def _fts_string(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _pairs_query(run: str) -> str:
    """Return the pairs-index query for one run: a prefix for one char, else a phrase."""
    if len(run) == 1:
        return _fts_string(run) + "*"
    return _fts_string(" ".join(run[i : i + 2] for i in range(len(run) - 1)))


@dataclass(frozen=True)
class Plan:
    """How to answer a query: which index, its MATCH text, what to highlight and re-check."""

    table: str
    match: str
    shown: tuple[str, ...]
    recheck: tuple[str, ...] = ()


def plan_query(terms: list[str]) -> Plan | None:
    """Return the plan for lower-case ``terms``, or None when no term can match anything.

    All terms of 3+ characters: the trigram index. Any shorter term: the pairs
    index for every term, a long term becoming the phrase of its pairs (the
    last-character token after each run keeps phrases from spanning runs). A
    long term with punctuation inside is matched there by its runs, then
    checked as a whole substring in Python (``recheck``).
    """
    if terms and all(len(t) >= 3 for t in terms):
        return Plan("search_text", " AND ".join(map(_fts_string, terms)), tuple(terms))
    parts: list[str] = []
    shown: list[str] = []
    recheck: list[str] = []
    for term in terms:
        runs = _RUN.findall(term)
        parts.extend(_pairs_query(run) for run in runs)
        if len(term) >= 3 and runs != [term]:
            recheck.append(term)
            shown.append(term)
        else:
            shown.extend(runs)
    if not parts:
        return None
    return Plan("search_pairs", " AND ".join(parts), tuple(shown), tuple(recheck))


@contextlib.contextmanager
def time_budget(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Interrupt statements of ``conn`` run inside this block after ``seconds``."""
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise SearchTimeout() from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def find(
    conn: sqlite3.Connection, terms: list[str], incident: str | None, limit: int
) -> tuple[list[Hit], tuple[str, ...]]:
    """Return the best ``limit`` matches of ``terms`` and the strings to highlight."""
    plan = plan_query(terms)
    if plan is None:
        return [], ()
    scope = (
        " JOIN search_rows s ON s.id = f.rowid WHERE s.incident = :incident AND"
        if incident
        else " WHERE"
    )
    # bm25 over the WINDOW most recent matches only: FTS5 walks its doclists
    # backwards and stops, so a term found in half the corpus costs no more
    # than a rare one. Older matches rank below the window, never vanish.
    sql = (
        "SELECT r.incident, r.seq, r.posted_at, i.title, t.title AS indexed_title, t.text"
        f" FROM (SELECT f.rowid AS id, bm25({plan.table}, 0.5, 1.0) AS score"
        f" FROM {plan.table} f{scope} {plan.table} MATCH :match"
        " ORDER BY f.rowid DESC LIMIT :window) m"
        " JOIN search_rows r ON r.id = m.id JOIN search_text t ON t.rowid = m.id"
        " JOIN incidents i ON i.id = r.incident"
        " WHERE NOT EXISTS (SELECT 1 FROM redactions x"
        " WHERE x.incident = r.incident AND x.seq = r.seq)"
        " ORDER BY m.score, m.id DESC LIMIT :limit"
    )
    params = {"match": plan.match, "incident": incident, "window": WINDOW}
    params["limit"] = limit * 4 if plan.recheck else limit
    hits = []
    for row in conn.execute(sql, params):
        if plan.recheck:
            haystack = (row["indexed_title"] + " " + row["text"]).lower()
            if not all(term in haystack for term in plan.recheck):
                continue
        hits.append(Hit(row["incident"], row["seq"], row["posted_at"], row["title"], row["text"]))
    return hits[:limit], plan.shown
