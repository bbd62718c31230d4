"""Capture the statements a write job makes, so that other replicas can replay them.

``Recorder`` stands in for the ``sqlite3.Connection`` a job receives on a
replicated node: every statement runs on the real connection, and those that
change the database are kept, with their parameters, in call order. A
statement that raises is not kept (SQLite undid it), and the group runner cuts
a job's statements off when it rolls the job back to its savepoint.

What counts as a change is decided from the statement's first keyword:
``SELECT``, ``VALUES`` and ``EXPLAIN`` read, ``WITH`` reads unless an
``INSERT``/``UPDATE``/``DELETE``/``REPLACE`` follows, and ``PRAGMA`` is treated
as connection-local and never logged (no job changes persistent settings).
Everything else, DDL and savepoint commands included, is logged.

Replay must give the same result everywhere, so a logged statement may not
call SQL functions whose value depends on the moment or on chance
(``CURRENT_TIMESTAMP``, ``random()``, ``strftime(..., 'now')``): pass the
value as a parameter instead. ``tests/test_redis_log.py`` scans the code for
such calls.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from .wal import Statement

_READS = frozenset({"SELECT", "VALUES", "EXPLAIN", "PRAGMA"})
_COMMENTS = re.compile(r"\s*(?:--[^\n]*(?:\n|$)|/\*.*?\*/)", re.S)
_DML = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)
_KINDS: dict[str, bool] = {}
_KINDS_MAX = 4096


def writes(sql: str) -> bool:
    """Tell whether ``sql`` may change the database (and so must be logged)."""
    known = _KINDS.get(sql)
    if known is not None:
        return known
    rest = sql
    while True:
        match = _COMMENTS.match(rest)
        if match is None or not match.group(0):
            break
        rest = rest[match.end() :]
    word = rest.lstrip().split(None, 1)[0].upper() if rest.strip() else ""
    word = word.rstrip("(;")
    result = bool(_DML.search(rest)) if word == "WITH" else word not in _READS and word != ""
    if len(_KINDS) >= _KINDS_MAX:
        _KINDS.clear()
    _KINDS[sql] = result
    return result


def _params(params: Any) -> Any:
    if isinstance(params, Mapping):
        return dict(params)
    return list(params)


class Recorder:
    """Run statements on ``conn`` and keep those that change it in ``statements``."""

    __slots__ = ("conn", "statements")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[Statement] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if not isinstance(params, list | tuple | Mapping):
            params = list(params)
        cursor = self.conn.execute(sql, params)
        if writes(sql):
            self.statements.append([sql, _params(params)])
        return cursor

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        rows = [_params(row) for row in rows]
        cursor = self.conn.executemany(sql, rows)
        if writes(sql):
            self.statements.extend([sql, row] for row in rows)
        return cursor

    def executescript(self, script: str) -> sqlite3.Cursor:
        # executescript COMMITs first: it would break the group transaction.
        raise TypeError("a write job may not call executescript; use execute per statement")

    def cursor(self) -> sqlite3.Cursor:
        # A raw cursor would write past the recorder.
        raise TypeError("a write job must call conn.execute, not conn.cursor()")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)
