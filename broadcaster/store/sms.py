"""Keep SMS subscriptions, the inbound messages already handled, and the SMS fan-out.

Numbers are personal information: they live only in ``sms_subscribers``
(E.164, deleted on unsubscribe). ``sms_inbound`` remembers the gateway's
message ids for a week so that a message the gateway sends again is handled
once. The fan-out of an entry to its incident's subscribers is one
``INSERT ... SELECT`` ordered by subscriber, so both backends queue the same
rows with ids in the same order.
"""

from __future__ import annotations

from typing import Any

from ..clock import format_ts, now


def enqueue_entry(
    conn: Any,
    channel: str,
    event: str,
    incident: str,
    seq: int,
    next_at: float,
    stamp: str,
) -> int:
    """Queue one delivery of entry ``seq`` per subscriber of the incident; return how many."""
    cur = conn.execute(
        "INSERT INTO deliveries (channel, target, event, incident, seq, next_at, created_at,"
        " updated_at) SELECT ?, id, ?, incident, ?, ?, ?, ? FROM sms_subscribers"
        " WHERE incident = ? ORDER BY id ON CONFLICT DO NOTHING",
        (channel, event, seq, next_at, stamp, stamp, incident),
    )
    return int(cur.rowcount)


def record_inbound(conn: Any, msgid: str, received_at: float, action: str) -> int | None:
    """Remember an inbound message; return its row id, or ``None`` if it was seen before."""
    row = conn.execute(
        "INSERT INTO sms_inbound (msgid, received_at, action) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING id",
        (msgid, received_at, action),
    ).fetchone()
    return None if row is None else int(row[0])


def inbound_seen(conn: Any, msgid: str) -> bool:
    """Tell whether an inbound message with ``msgid`` was recorded already."""
    return (
        conn.execute("SELECT 1 FROM sms_inbound WHERE msgid = ?", (msgid,)).fetchone() is not None
    )


def forget_inbound(conn: Any, before: float) -> None:
    """Forget inbound messages received before ``before`` (unix time)."""
    conn.execute("DELETE FROM sms_inbound WHERE received_at < ?", (before,))


def incident_by_code(conn: Any, code: str) -> Any:
    """Return the incident (``id``, ``title``, ``code``, ``status``) with SMS code ``code``."""
    return conn.execute(
        "SELECT id, title, code, status FROM incidents WHERE code = ?", (code,)
    ).fetchone()


def latest_active_code(conn: Any) -> str | None:
    """Return the SMS code of the most recently created active incident."""
    row = conn.execute(
        "SELECT code FROM incidents WHERE status = 'active' ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def unsubscribe(conn: Any, number: str, incident: str | None = None) -> None:
    """Delete a number's subscription to ``incident``, or to every incident."""
    if incident is None:
        conn.execute("DELETE FROM sms_subscribers WHERE number = ?", (number,))
    else:
        conn.execute(
            "DELETE FROM sms_subscribers WHERE number = ? AND incident = ?", (number, incident)
        )


def subscriber_count(conn: Any, incident: str) -> int:
    """Count an incident's subscribers."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM sms_subscribers WHERE incident = ?", (incident,)
        ).fetchone()[0]
    )


def subscribe(conn: Any, incident: str, number: str, source: str = "sms") -> None:
    """Subscribe a number to an incident (a no-op if it is already)."""
    conn.execute(
        "INSERT INTO sms_subscribers (incident, number, created_at, source)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (incident, number, format_ts(now()), source),
    )


def recent_subscribers(conn: Any, incident: str, limit: int = 50) -> list[Any]:
    """Return the newest subscriptions (``number``, ``created_at``, ``source``), newest first."""
    return list(
        conn.execute(
            "SELECT number, created_at, source FROM sms_subscribers WHERE incident = ?"
            " ORDER BY id DESC LIMIT ?",
            (incident, limit),
        ).fetchall()
    )


def number_of(conn: Any, subscriber: int) -> str | None:
    """Return a subscriber's number, or ``None`` once they have unsubscribed."""
    row = conn.execute("SELECT number FROM sms_subscribers WHERE id = ?", (subscriber,)).fetchone()
    return row[0] if row else None


def incident_title(conn: Any, incident: str) -> str | None:
    """Return an incident's title (what an SMS starts with), or ``None``."""
    row = conn.execute("SELECT title FROM incidents WHERE id = ?", (incident,)).fetchone()
    return row[0] if row else None


def delivery_states(conn: Any, channel: str, incident: str, event: str) -> dict[str, int]:
    """Count an incident's deliveries of ``event`` on ``channel`` by state."""
    rows = conn.execute(
        "SELECT state, COUNT(*) FROM deliveries WHERE channel = ? AND incident = ?"
        " AND event = ? GROUP BY state",
        (channel, incident, event),
    ).fetchall()
    return {state: count for state, count in rows}
