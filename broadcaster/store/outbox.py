"""Keep the delivery outbox: one row per delivery, a lease per claim, a row per attempt.

``deliveries`` holds a row per (channel, target, event, entry) and
``delivery_attempts`` a row per attempt; the channels decide what a row means
and what an outcome does (``channels.delivery.outbox``), this module only reads and
writes them, on SQLite or PostgreSQL.

Claims are atomic on both backends. On SQLite the single writer runs one claim
at a time. On PostgreSQL the due rows are read ``FOR UPDATE SKIP LOCKED``: a
row another transaction is claiming (a worker on any node) is skipped, not
waited for and never leased twice, whatever else serialises the writers. The
lease (``leased_until``, ``leased_by``) then keeps the row for the worker until
it records a result, or until the lease lapses and its worker is gone
(``broadcaster.store.workers``); the next claim after that marks the attempt
left ``sending`` as ``interrupted`` and tries again under the same ``msg_<id>``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..clock import format_ts, now
from .pg_conn import dialect_of
from .workers import live_owners

#: Attempts renewed per statement (well under SQLite's bound on parameters).
RENEW_CHUNK = 500


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: what to send, to whom, and which attempt this is."""

    id: int
    channel: str
    target: int
    event: str
    incident: str
    seq: int
    payload: str | None
    attempt: int
    attempt_id: int
    created_at: str

    @property
    def message_id(self) -> str:
        """Return the id that stays the same across retries (``webhook-id``, SMS DLR id)."""
        return f"msg_{self.id}"


_DUE = (
    "{d}channel = :channel AND {d}state = 'pending' AND {d}next_at <= :at"
    " AND COALESCE({d}leased_until, 0) <= :at"
    " AND ({d}leased_by IS NULL OR {d}leased_by NOT IN ({live}))"
    " AND {d}id NOT IN ({sending})"
)
#: SQLite passes the lists of live workers and of rows in flight as JSON arrays.
_SQLITE_DUE = _DUE.format(
    d="{d}",
    live="SELECT value FROM json_each(:live)",
    sending="SELECT value FROM json_each(:sending)",
)
_PG_DUE = _DUE.format(
    d="{d}",
    live="SELECT UNNEST(CAST(:live AS BIGINT[]))",
    sending="SELECT UNNEST(CAST(:sending AS BIGINT[]))",
)
#: Due rows of a channel, at most ``per_target`` per target, oldest first.
_CLAIM = (
    "SELECT * FROM (SELECT d.*, ROW_NUMBER() OVER (PARTITION BY target ORDER BY next_at, id)"
    f" AS rn FROM deliveries d WHERE {_SQLITE_DUE.format(d='')}) AS due"
    " WHERE rn <= :per_target ORDER BY next_at, id LIMIT :limit"
)
#: The same on PostgreSQL, in two statements. PostgreSQL locks no row of a window
#: query, and joined with one (to lock by id) it may plan a nested loop that
#: computes the window again for every due row: 50 s for 10,000 rows whose
#: statistics autovacuum has not gathered yet, every other write of the site
#: waiting. So the ids are picked first (a window over one table, linear
#: whatever the statistics), then their rows are locked by primary key,
#: skipping those another claim holds, and re-checked once locked. The
#: worker's rows in flight count against ``per_target`` here, so that the rows
#: picked are exactly those it may claim.
_PG_PICK = (
    "SELECT id FROM (SELECT id, target, next_at,"
    " ROW_NUMBER() OVER (PARTITION BY target ORDER BY next_at, id) AS rn"
    f" FROM deliveries WHERE {_PG_DUE.format(d='')}) AS due LEFT JOIN"
    " (SELECT UNNEST(CAST(:busy_targets AS BIGINT[])) AS target,"
    " UNNEST(CAST(:busy_counts AS INTEGER[])) AS n) AS busy USING (target)"
    " WHERE rn + COALESCE(busy.n, 0) <= :per_target ORDER BY next_at, id LIMIT :picks"
)
_PG_LOCK = (
    "SELECT d.* FROM deliveries d WHERE d.id = ANY(CAST(:ids AS BIGINT[]))"
    f" AND {_PG_DUE.format(d='d.')}"
    " ORDER BY d.next_at, d.id LIMIT :slots FOR UPDATE SKIP LOCKED"
)


def enqueue(
    conn: Any,
    channel: str,
    target: int,
    event: str,
    incident: str,
    seq: int,
    payload: str | None = None,
    state: str = "pending",
) -> int:
    """Insert one delivery unless the same one exists; return 1 if it was added."""
    moment = now()
    stamp = format_ts(moment)
    cur = conn.execute(
        "INSERT INTO deliveries (channel, target, event, incident, seq, payload, state,"
        " next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (channel, target, event, incident, seq, payload, state, moment.timestamp(), stamp, stamp),
    )
    return int(cur.rowcount)


def claim(
    conn: Any,
    free: Mapping[str, int],
    per_target: Mapping[str, int],
    busy: Counter[tuple[str, int]],
    lease: float,
    *,
    owner: int | None = None,
    sending: Collection[int] = (),
) -> list[Delivery]:
    """Lease up to ``free[channel]`` due rows per channel and record their attempts as started.

    At most ``per_target[channel]`` rows per target are in flight at once
    (``busy`` counts this worker's), so one slow endpoint or phone cannot take
    every slot, and one subscriber's SMS go out in order.

    The leases name ``owner`` (``broadcaster.store.workers``). A lapsed lease is
    taken over only from a worker that is not alive, or from ``owner`` itself
    for a row it no longer sends: ``sending`` lists the rows it still does.
    """
    moment = now()
    at, stamp = moment.timestamp(), format_ts(moment)
    postgresql = dialect_of(conn) == "postgresql"
    live = [worker for worker in live_owners(conn, at) if worker != owner]
    mine = sorted(sending)
    claimed: list[Delivery] = []
    for channel, slots in free.items():
        if slots <= 0:
            continue
        limit = per_target.get(channel, 1)
        params: dict[str, Any] = {"channel": channel, "at": at, "per_target": limit}
        if postgresql:
            targets = {target: n for (c, target), n in busy.items() if c == channel and n > 0}
            params |= {
                "busy_targets": list(targets),
                "busy_counts": list(targets.values()),
                "live": live,
                "sending": mine,
            }
            # Twice the slots: some may be locked by another claim by the time they are.
            picked = conn.execute(_PG_PICK, params | {"picks": slots * 2}).fetchall()
            params["ids"] = [row[0] for row in picked]
            rows = conn.execute(_PG_LOCK, params | {"slots": slots}).fetchall()
        else:
            params |= {"live": json.dumps(live), "sending": json.dumps(mine)}
            rows = conn.execute(_CLAIM, params | {"limit": slots * 2 + len(busy)}).fetchall()
        taken: Counter[int] = Counter()
        for row in rows:
            target = row["target"]
            if busy[(channel, target)] + taken[target] >= limit:
                continue
            taken[target] += 1
            claimed.append(_start(conn, row, at + lease, owner, stamp))
            if sum(taken.values()) >= slots:
                break
    return claimed


def _start(conn: Any, row: Any, until: float, owner: int | None, stamp: str) -> Delivery:
    conn.execute(
        "UPDATE delivery_attempts SET outcome = 'interrupted', finished_at = ?,"
        " error = 'no outcome recorded: the worker stopped during the attempt'"
        " WHERE delivery = ? AND outcome = 'sending'",
        (stamp, row["id"]),
    )
    attempt = row["attempts"] + 1
    conn.execute(
        "UPDATE deliveries SET attempts = ?, leased_until = ?, leased_by = ?, updated_at = ?"
        " WHERE id = ?",
        (attempt, until, owner, stamp, row["id"]),
    )
    attempt_id = conn.execute(
        "INSERT INTO delivery_attempts (delivery, n, started_at) VALUES (?, ?, ?) RETURNING id",
        (row["id"], attempt, stamp),
    ).fetchone()[0]
    return Delivery(
        id=row["id"],
        channel=row["channel"],
        target=row["target"],
        event=row["event"],
        incident=row["incident"],
        seq=row["seq"],
        payload=row["payload"],
        attempt=attempt,
        attempt_id=attempt_id,
        created_at=row["created_at"],
    )


def renew(conn: Any, attempt_ids: list[int], until: float) -> None:
    """Extend the leases of deliveries whose given attempts are still ``sending``.

    A worker renews what it sends or is still recording, so a lease lapses only
    when its worker stops renewing it (a crash), never while a slow store
    delays a result: another worker then never claims a row that is being sent.
    """
    for start in range(0, len(attempt_ids), RENEW_CHUNK):
        chunk = attempt_ids[start : start + RENEW_CHUNK]
        marks = ",".join("?" * len(chunk))
        conn.execute(
            "UPDATE deliveries SET leased_until = ? WHERE state = 'pending' AND id IN"
            f" (SELECT delivery FROM delivery_attempts WHERE id IN ({marks})"
            " AND outcome = 'sending')",
            (until, *chunk),
        )


def record(
    conn: Any,
    delivery: Delivery,
    *,
    outcome: str,
    code: int | None,
    error: str | None,
    duration_ms: int,
    state: str,
    next_at: float,
) -> bool:
    """Close the attempt and move a still-pending delivery to ``state``; tell whether it moved.

    A delivery settled meanwhile (a delivery report, a delete) keeps that
    state; the payload is kept only while the delivery may still be sent.
    """
    stamp = format_ts(now())
    conn.execute(
        "UPDATE delivery_attempts SET finished_at = ?, duration_ms = ?, outcome = ?,"
        " response_code = ?, error = ? WHERE id = ?",
        (stamp, duration_ms, outcome, code, error, delivery.attempt_id),
    )
    cur = conn.execute(
        "UPDATE deliveries SET state = ?, next_at = ?, leased_until = NULL, leased_by = NULL,"
        " updated_at = ?,"
        " last_error = ?, payload = CASE WHEN ? = 1 THEN payload END"
        " WHERE id = ? AND state = 'pending'",
        (state, next_at, stamp, error, state in ("pending", "held"), delivery.id),
    )
    return bool(cur.rowcount)


def state_of(conn: Any, delivery_id: int, channel: str | None = None) -> str | None:
    """Return a delivery's state (only if it is of ``channel``, when given), or ``None``."""
    if channel is None:
        row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    else:
        row = conn.execute(
            "SELECT state FROM deliveries WHERE id = ? AND channel = ?", (delivery_id, channel)
        ).fetchone()
    return row[0] if row else None


def advance(conn: Any, delivery_id: int, channel: str, state: str, before: Collection[str]) -> None:
    """Move a delivery of ``channel`` to ``state`` if it is now in one of ``before`` (a
    gateway's report: states only go forward), ending its lease; one statement, nothing
    read back, so a report costs the writer no round trip."""
    marks = ",".join("?" * len(before))
    conn.execute(
        "UPDATE deliveries SET state = ?, leased_until = NULL, leased_by = NULL, updated_at = ?"
        f" WHERE id = ? AND channel = ? AND state IN ({marks})",
        (state, format_ts(now()), delivery_id, channel, *before),
    )


def next_due(conn: Any) -> float | None:
    """Return when the earliest pending row can be claimed (unix time), if any."""
    later = "GREATEST" if dialect_of(conn) == "postgresql" else "MAX"
    row = conn.execute(
        f"SELECT MIN({later}(next_at, COALESCE(leased_until, 0))) FROM deliveries"
        " WHERE state = 'pending'"
    ).fetchone()
    return row[0]


def depth(conn: Any) -> dict[str, int]:
    """Count pending rows per channel (the queue depth operators watch)."""
    rows = conn.execute(
        "SELECT channel, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY channel"
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def attempts_of(conn: Any, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Return every attempt of the given deliveries, oldest first, keyed by delivery id."""
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return found
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT delivery, n, started_at, finished_at, duration_ms, outcome, response_code,"
        f" error FROM delivery_attempts WHERE delivery IN ({marks}) ORDER BY delivery, n, id",
        ids,
    ).fetchall()
    for row in rows:
        found[row["delivery"]].append(
            {key: row[key] for key in row.keys() if key != "delivery"}  # noqa: SIM118
        )
    return found
