"""Check, before a replicated node opens its database, that Redis and the file are what they seem.

A node's ``broadcaster.db`` is a replica of one log (its ``wal_state`` table
names the log), a single-node database (rows, no ``wal_state``), or empty.
``check_replica`` lets a node start only on an empty file or on a replica of
the log in Redis now: it never overwrites a single-node database, nor a
replica of another log, which after Redis lost its data may be the only copy
left (``broadcaster migrate-redis`` copies either into an empty Redis). It
also checks that every node signs with one key, and warns when Redis is not
set up to keep acknowledged writes (``appendonly yes``, ``appendfsync always``).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from . import wal
from .errors import ConfigError

log = logging.getLogger(__name__)


def check_signing_key(log_: wal.Log, key_id: str) -> None:
    """Record ``key_id`` as the nodes' key if none is; refuse to run with another one."""
    log_.client.set(wal.SIGNING_KEY_ID, key_id, nx=True)
    shared = log_.get(wal.SIGNING_KEY_ID)
    if shared != key_id:
        raise ConfigError(
            f"this node signs with key {key_id} but the others use {shared}:"
            " give every node the same BROADCASTER_SIGNING_KEY"
        )


def check_replica(path: Path, identity: str) -> None:
    """Refuse a file this node must not replicate into; remove an empty leftover."""
    if not path.exists():
        return
    found = _identity_of(path)
    if found is None and _holds_data(path):
        raise ConfigError(
            f"{path} is a single-node database, not a replica: copy it into Redis with"
            " 'broadcaster migrate-redis', then start this node on an empty data"
            " directory (or move the file aside)"
        )
    if found is not None and found != identity:
        raise ConfigError(
            f"{path} replicates another log ({found}) than the one in Redis"
            f" ({identity}). If Redis lost its data, keep this file: it can be"
            " copied back with 'broadcaster migrate-redis'. Otherwise delete it to"
            " rebuild the replica from Redis."
        )
    if found is None:  # tables but no rows: a start that never finished
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


def warn_unless_durable(log_: wal.Log) -> None:
    """Say so at start when Redis may lose acknowledged writes (docs/redis.md)."""
    try:
        found = {**log_.client.config_get("appendonly"), **log_.client.config_get("appendfsync")}
    except RedisError:  # CONFIG may be disabled (managed Redis): nothing to check
        return
    values = {_text(k): _text(v) for k, v in found.items()}
    if values.get("appendonly") != "yes" or values.get("appendfsync") != "always":
        log.warning(
            "Redis runs with appendonly=%s appendfsync=%s: a Redis crash can lose writes"
            " already acknowledged; use appendonly yes, appendfsync always",
            values.get("appendonly"),
            values.get("appendfsync"),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _identity_of(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT log FROM wal_state").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _holds_data(path: Path) -> bool:
    """Tell whether the database at ``path`` holds any row."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
        # Virtual tables and their shadow tables hold bookkeeping rows even when empty.
        virtual = [name + "_" for name, sql in rows if sql.upper().startswith("CREATE VIRTUAL")]
        tables = [
            name
            for name, sql in rows
            if not name.startswith(("sqlite_", *virtual)) and not sql.upper().startswith("CREATE V")
        ]
        return any(conn.execute(f'SELECT 1 FROM "{n}" LIMIT 1').fetchone() for n in tables)
    finally:
        conn.close()
