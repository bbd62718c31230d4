"""Keep the shared write log in a Redis Stream: positions, entries, the lock and the fence.

The log is the Stream ``broadcaster:{wal}``. Each entry is one committed write
group of one node: field ``d`` holds its statements as JSON (a list of jobs,
each a list of ``[sql, params]``), field ``g`` a random group id. A migration
snapshot is stored the same way in parts (fields ``s`` = ``"i/n"``, ``h`` =
SHA-256 of the whole file, ``b`` = the bytes).

Three small keys sit beside it, under the same hash tag so that the scripts
touch one Redis Cluster slot:

- ``:head`` the id of the last entry, read by the fence (cheaper than asking
  the stream, whose last entry may be a multi-megabyte snapshot part);
- ``:lock`` the write lock, ``SET NX PX``, holding the holder's random token;
- ``:id`` a random name for this log, so a replica notices that it was built
  from another one (Redis flushed, pointed elsewhere) and rebuilds.

The lock only spares nodes wasted work; correctness comes from the fence:
``append`` adds an entry only if the head is still the one the node caught up
to, in one script, so two nodes can never both append after the same state.
Every call here blocks: it runs on the database's writer thread, which must
not interleave anything with a group while it waits.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

STREAM = "broadcaster:{wal}"
HEAD = STREAM + ":head"
LOCK = STREAM + ":lock"
IDENTITY = STREAM + ":id"
#: The Ed25519 key id every node must sign with (checked at start).
SIGNING_KEY_ID = STREAM + ":signing-key-id"
ORIGIN = "0-0"

Position = tuple[int, int]
#: One statement as logged: SQL text and its parameters (a list or a mapping).
Statement = list[Any]

# The lock is ephemeral: REPL_NONE keeps it out of the AOF (and Redis replicas),
# so taking and freeing it costs no fsync; the fence alone carries correctness.
_ACQUIRE = """
redis.set_repl(redis.REPL_NONE)
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local head = redis.call('GET', KEYS[2]) or '0-0'
if ok then return {1, head, 0} end
return {0, head, redis.call('PTTL', KEYS[1])}
"""
_APPEND = """
local head = redis.call('GET', KEYS[2]) or '0-0'
if head ~= ARGV[1] then return {0, head} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id)
redis.set_repl(redis.REPL_NONE)
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == ARGV[2] then
    redis.call('DEL', KEYS[3])
end
return {1, id}
"""
_RELEASE = """
redis.set_repl(redis.REPL_NONE)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def parse(position: str | bytes) -> Position:
    """Return a stream id (``"ms-seq"``) as a comparable pair."""
    text = position.decode() if isinstance(position, bytes) else position
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def text(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


class Fenced(Exception):
    """Signal that another node appended since this one caught up (retry the group)."""

    def __init__(self, head: str) -> None:
        super().__init__(f"the log moved on to {head}")
        self.head = head


@dataclass(frozen=True)
class LogEntry:
    """One stream entry: its id and fields (bytes keys and values, as Redis has them)."""

    id: str
    fields: dict[bytes, bytes]

    @property
    def position(self) -> Position:
        return parse(self.id)

    @property
    def group(self) -> str:
        return self.fields.get(b"g", b"").decode()

    @property
    def snapshot_part(self) -> tuple[int, int] | None:
        """Return ``(i, n)`` for a snapshot part, ``None`` for statements."""
        raw = self.fields.get(b"s")
        if raw is None:
            return None
        i, _, n = raw.decode().partition("/")
        return int(i), int(n)

    def jobs(self) -> list[list[Statement]]:
        return decode(self.fields[b"d"])


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"a logged SQL parameter must be JSON-like or bytes, got {type(value)!r}")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$b" in obj:
        return base64.b64decode(obj["$b"])
    return obj


def encode(jobs: Sequence[Sequence[Statement]]) -> bytes:
    """Return a group's statements as the ``d`` field (compact JSON, UTF-8)."""
    return json.dumps(jobs, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def decode(data: bytes) -> list[list[Statement]]:
    return json.loads(data, object_hook=_hook)


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """Return a blocking client that never retries by itself.

    A retried append whose first reply was lost would meet its own entry at
    the fence; ``Log.append`` resolves that case by group id instead.
    """
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
    )


class Log:
    """Speak to the stream for one node (blocking; used from the writer thread)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._append = client.register_script(_APPEND)
        self._release = client.register_script(_RELEASE)

    def identity(self) -> str:
        """Return the log's name, naming it now if it has none."""
        self.client.set(IDENTITY, secrets.token_hex(8), nx=True)
        return _str(self.client.get(IDENTITY) or "")

    def get(self, key: str) -> str | None:
        found = self.client.get(key)
        return None if found is None else _str(found)

    def head(self) -> str:
        return _str(self.client.get(HEAD) or ORIGIN)

    def acquire(self, token: str, ttl_ms: int) -> tuple[bool, str, int]:
        """Try to take the lock; return ``(taken, head, ms the holder keeps it)``."""
        ok, head, pttl = self._acquire(keys=[LOCK, HEAD], args=[token, ttl_ms])
        return bool(ok), head.decode() if isinstance(head, bytes) else str(head), int(pttl)

    def release(self, token: str) -> None:
        self._release(keys=[LOCK], args=[token])

    def append(self, expected: str, fields: dict[str, bytes | str], token: str = "") -> str:
        """Add an entry after ``expected`` and free the lock; raise ``Fenced`` if the head moved.

        ``fields`` must hold a unique ``g``: when the head moved because this
        very entry was appended (a reply lost, then retried), the entry after
        ``expected`` carries that group id and its id is returned instead.
        """
        flat: list[bytes | str] = []
        for key, value in fields.items():
            flat += [key, value]
        ok, value = self._append(keys=[STREAM, HEAD, LOCK], args=[expected, token, *flat])
        found = value.decode() if isinstance(value, bytes) else str(value)
        if ok:
            return found
        mine = self.find_group(expected, str(fields["g"]))
        if mine is not None:
            return mine
        raise Fenced(found)

    def find_group(self, after: str, group: str) -> str | None:
        """Return the id of the entry right after ``after`` if it is group ``group``."""
        entries = self.read(after, 1)
        if entries and entries[0].group == group:
            return entries[0].id
        return None

    def read(self, after: str, count: int) -> list[LogEntry]:
        """Return up to ``count`` entries after ``after``, oldest first."""
        rows: Any = self.client.xrange(STREAM, min="(" + after, count=count)
        return [LogEntry(_str(i), f) for i, f in rows]

    def wait(self, after: str, block_ms: int, count: int) -> list[LogEntry]:
        """Return entries after ``after``, waiting up to ``block_ms`` for the first one."""
        reply = self.client.xread({STREAM: after}, count=count, block=max(1, block_ms))
        return entries_of(reply)

    def length(self) -> int:
        return int(self.client.xlen(STREAM))


def entries_of(reply: Any) -> list[LogEntry]:
    """Return the entries of an ``XREAD`` reply (RESP2 list or RESP3 mapping)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    found: list[LogEntry] = []
    for _, rows in streams:
        if rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], list):
            rows = rows[0]  # RESP3 wraps the rows once more
        found += [LogEntry(_str(i), f) for i, f in rows]
    return found


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
