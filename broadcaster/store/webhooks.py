"""Keep webhook endpoints, their health, and the listing of their deliveries.

Rows come back as the database gives them (readable as ``row["column"]``);
``channels.webhooks.api`` turns them into what the API shows, and
``channels.webhooks.send`` decides when an endpoint is disabled. Pausing or
disabling an endpoint holds its waiting deliveries in the same transaction;
resuming releases them.
"""

from __future__ import annotations

from typing import Any

from ..clock import format_ts, now

#: The outbox channel of webhook deliveries.
CHANNEL = "webhook"


#: Where a PostgreSQL write group keeps ``endpoints`` between its jobs.
_GROUP_KEY = "webhook_endpoints"


def endpoints(conn: Any) -> list[Any]:
    """Return every endpoint's id, scope, filters, events and status (what enqueueing needs).

    Inside a PostgreSQL write group (``conn.group`` set) the list is read once,
    saving each append a round trip: the group holds the site's write lock, so
    only its own jobs can change endpoints, and each that does forgets the list
    (``_changed``), as does a rolled-back job.
    """
    group = getattr(conn, "group", None)
    if group is not None and _GROUP_KEY in group:
        return list(group[_GROUP_KEY])
    rows = list(
        conn.execute(
            "SELECT id, incidents, areas, min_severity, events, status FROM webhooks"
        ).fetchall()
    )
    if group is not None:
        group[_GROUP_KEY] = rows
    return list(rows)


def _changed(conn: Any) -> None:
    group = getattr(conn, "group", None)
    if group is not None:
        group.pop(_GROUP_KEY, None)


def unknown_incident(conn: Any, incidents: list[str]) -> str | None:
    """Return the first of ``incidents`` that does not exist, if any."""
    for incident in incidents:
        if not conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident,)).fetchone():
            return incident
    return None


def insert(
    conn: Any,
    *,
    url: str,
    secret: str,
    incidents: str,
    events: str,
    description: str | None,
    created_by: str,
    areas: str | None = None,
    min_severity: str | None = None,
) -> int:
    """Register an endpoint (scope, areas and events as JSON text); return its id."""
    _changed(conn)
    row = conn.execute(
        "INSERT INTO webhooks (url, secret, incidents, events, description, created_at,"
        " created_by, areas, min_severity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            url,
            secret,
            incidents,
            events,
            description,
            format_ts(now()),
            created_by,
            areas,
            min_severity,
        ),
    ).fetchone()
    return int(row[0])


def get(conn: Any, webhook_id: int) -> Any:
    """Return an endpoint's row, or ``None``."""
    return conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()


def all_endpoints(conn: Any) -> list[Any]:
    """Return every endpoint's row, oldest first."""
    return list(conn.execute("SELECT * FROM webhooks ORDER BY id").fetchall())


def delivery_counts(conn: Any, webhook_id: int) -> dict[str, int]:
    """Count an endpoint's deliveries by state."""
    rows = conn.execute(
        "SELECT state, COUNT(*) FROM deliveries WHERE channel = ? AND target = ? GROUP BY state",
        (CHANNEL, webhook_id),
    ).fetchall()
    return {state: count for state, count in rows}


def delete(conn: Any, webhook_id: int) -> None:
    """Delete an endpoint and every delivery queued or done for it."""
    _changed(conn)
    conn.execute("DELETE FROM deliveries WHERE channel = ? AND target = ?", (CHANNEL, webhook_id))
    conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))


def deliveries(conn: Any, webhook_id: int, before: int, limit: int) -> list[Any]:
    """Return up to ``limit`` of an endpoint's deliveries, newest first, ids below ``before``.

    ``before = 0`` starts at the newest.
    """
    return list(
        conn.execute(
            "SELECT id, event, incident, seq, state, attempts, next_at, created_at,"
            " updated_at, last_error FROM deliveries WHERE channel = ? AND target = ?"
            " AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
            (CHANNEL, webhook_id, before, before, limit),
        ).fetchall()
    )


def target(conn: Any, webhook_id: int) -> Any:
    """Return what a send needs of an endpoint (``url``, ``secret``, ``status``), or ``None``."""
    return conn.execute(
        "SELECT url, secret, status FROM webhooks WHERE id = ?", (webhook_id,)
    ).fetchone()


def record_success(conn: Any, webhook_id: int) -> None:
    """Note a delivered attempt: the endpoint is healthy again."""
    conn.execute(
        "UPDATE webhooks SET failing_since = NULL, consecutive_dead = 0,"
        " last_success_at = ? WHERE id = ?",
        (format_ts(now()), webhook_id),
    )


def health(conn: Any, webhook_id: int) -> Any:
    """Return ``failing_since`` and ``consecutive_dead`` of an endpoint, or ``None``."""
    return conn.execute(
        "SELECT failing_since, consecutive_dead FROM webhooks WHERE id = ?", (webhook_id,)
    ).fetchone()


def record_failing(conn: Any, webhook_id: int, since: float, dead: int) -> None:
    """Store when an endpoint started failing and how many deliveries in a row died."""
    conn.execute(
        "UPDATE webhooks SET failing_since = ?, consecutive_dead = ? WHERE id = ?",
        (since, dead, webhook_id),
    )


def hold_if_inactive(conn: Any, delivery_id: int, webhook_id: int) -> None:
    """Hold a pending delivery whose endpoint was paused or disabled while it was sent."""
    conn.execute(
        "UPDATE deliveries SET state = 'held' WHERE id = ? AND state = 'pending'"
        " AND EXISTS (SELECT 1 FROM webhooks WHERE id = ? AND status != 'active')",
        (delivery_id, webhook_id),
    )


def set_status(conn: Any, webhook_id: int, status: str, reason: str | None) -> None:
    """Pause, disable or resume an endpoint, holding or releasing its waiting deliveries."""
    _changed(conn)
    moment = now()
    conn.execute(
        "UPDATE webhooks SET status = ?, disabled_reason = ?, status_changed_at = ? WHERE id = ?",
        (status, reason, format_ts(moment), webhook_id),
    )
    if status == "active":
        conn.execute(
            "UPDATE webhooks SET failing_since = NULL, consecutive_dead = 0 WHERE id = ?",
            (webhook_id,),
        )
        conn.execute(
            "UPDATE deliveries SET state = 'pending', next_at = ? WHERE channel = ?"
            " AND target = ? AND state = 'held'",
            (moment.timestamp(), CHANNEL, webhook_id),
        )
    else:
        # Leased rows are in flight; their result decides, then ``settle`` holds them.
        conn.execute(
            "UPDATE deliveries SET state = 'held' WHERE channel = ? AND target = ?"
            " AND state = 'pending' AND COALESCE(leased_until, 0) <= ?",
            (CHANNEL, webhook_id, moment.timestamp()),
        )
