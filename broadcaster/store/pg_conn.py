"""Give a psycopg connection the small face of ``sqlite3`` that store jobs use.

Store jobs are plain functions of a connection (``broadcaster.store.sqlite``);
the same job runs on either backend when its SQL is portable. This adapter
makes that possible without a query builder: ``?`` and ``:name`` placeholders
become psycopg's ``%s`` and ``%(name)s`` (a literal ``%`` is escaped), rows
can be read by position or by column name like ``sqlite3.Row``, booleans are
sent as integers (the schema stores flags as 0/1 on both backends) and
``numeric`` results (``SUM``, ``AVG``) come back as ``int`` or ``float``, never
``Decimal``. SQL that really differs between the two is chosen by the store
module that owns it, through ``dialect``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.adapt import Loader

DIALECT = "postgresql"


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """Return ``sql`` with sqlite placeholders turned into psycopg's, quotes left alone."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        elif ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            if i > 0 and sql[i - 1] == ":":  # a ``::type`` cast
                out.append(ch)
                i += 1
                continue
            end = i + 1
            while end < n and (sql[end].isalnum() or sql[end] == "_"):
                end += 1
            out.append(f"%({sql[i + 1 : end]})s")
            i = end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    index = {name: i for i, name in enumerate(names)}

    class Row(tuple[Any, ...]):
        """A result row readable as ``row[0]`` or ``row["name"]``, like ``sqlite3.Row``."""

        __slots__ = ()

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, str):
                return tuple.__getitem__(self, index[key])
            return tuple.__getitem__(self, key)

        def keys(self) -> list[str]:
            return list(names)

    return Row


def _row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Any]:
    description = cursor.description or ()
    row = _row_class(tuple(column.name for column in description))
    return row


class _NumericLoader(Loader):
    """Load ``numeric`` as ``int`` when it is whole, else ``float``."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(c in text for c in ".eEN") else int(text)


def _params(params: Sequence[Any] | Mapping[str, Any]) -> Any:
    if isinstance(params, Mapping):
        return {k: int(v) if isinstance(v, bool) else v for k, v in params.items()}
    return tuple(int(v) if isinstance(v, bool) else v for v in params)


class PgCursor:
    """The result of one statement: ``fetchone``, ``fetchall``, ``rowcount``, iteration.

    In pipeline mode the statement's result has not arrived when ``execute``
    returns: reading anything of it first syncs the pipeline (one round trip for
    every statement queued so far), so a job reads exactly what it would read
    without the pipeline.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], conn: PgConnection) -> None:
        self._cursor = cursor
        self._conn = conn

    @property
    def rowcount(self) -> int:
        self._conn.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        self._conn.sync()
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        self._conn.sync()
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection with ``execute`` taking sqlite-style SQL and parameters."""

    dialect = DIALECT

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        raw.row_factory = _row_factory
        raw.adapters.register_loader("numeric", _NumericLoader)
        self.pipeline: psycopg.Pipeline | None = None
        self._unsynced = False
        #: Values a write group may keep between its jobs (see ``store.log.size``);
        #: ``None`` outside a write group, emptied when a job is rolled back.
        self.group: dict[str, Any] | None = None

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> PgCursor:
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), _params(params))
        self._unsynced = self.pipeline is not None
        return PgCursor(cursor, self)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [_params(row) for row in rows])
        self._unsynced = self.pipeline is not None
        return PgCursor(cursor, self)

    def sync(self) -> None:
        """In pipeline mode, send what is queued and wait for every result (raising errors)."""
        if self.pipeline is not None and self._unsynced:
            self._unsynced = False
            self.pipeline.sync()

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken


def dialect_of(conn: Any) -> str:
    """Return ``"postgresql"`` or ``"sqlite"`` for a job's connection."""
    return getattr(conn, "dialect", "sqlite")
