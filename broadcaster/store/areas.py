"""Keep the site's areas, the incidents in them, and residents' standing SMS alerts by area.

``areas`` holds each code with its name, aliases and parent; ``area_keys`` maps
every normalised name, alias and code to the codes it names (two streets of a
city may share a name); ``area_paths`` is the closure of the parent relation
(every ``(area, ancestor)`` pair, the area itself included), rebuilt whenever
the table changes, so that "the areas an incident reaches" is one indexed
query: the incident's areas, everything inside them and everything they lie
in. ``incident_areas`` indexes incidents by area.

The SMS fan-out to area subscribers is one ``INSERT ... SELECT`` run inside
the append transaction: it groups the matching subscriptions by number (one
row per phone, however many of its areas match) and skips numbers subscribed
to the incident itself, which get the entry through that subscription. The
append lock serialises it with every other append and subscription, so no
phone is queued the same entry twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..clock import format_ts, now
from ..errors import Unprocessable

#: The areas an incident reaches: its own, those inside them, and those they lie in.
_REACHED = (
    "SELECT p.area FROM area_paths p JOIN incident_areas ia ON p.ancestor = ia.area"
    " WHERE ia.incident = :incident"
    " UNION SELECT p.ancestor FROM area_paths p JOIN incident_areas ia ON p.area = ia.area"
    " WHERE ia.incident = :incident"
)


def upsert(
    conn: Any, code: str, name: str, aliases: Sequence[str], parent: str | None, keys: set[str]
) -> bool:
    """Create or replace an area and its lookup keys; return whether anything changed."""
    current = conn.execute(
        "SELECT name, aliases, parent FROM areas WHERE code = ?", (code,)
    ).fetchone()
    encoded = json.dumps(list(aliases), ensure_ascii=False)
    if current is not None and tuple(current) == (name, encoded, parent):
        return False
    conn.execute(
        "INSERT INTO areas (code, name, aliases, parent, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (code) DO UPDATE SET name = excluded.name, aliases = excluded.aliases,"
        " parent = excluded.parent, updated_at = excluded.updated_at",
        (code, name, encoded, parent, format_ts(now())),
    )
    conn.execute("DELETE FROM area_keys WHERE code = ?", (code,))
    for key in sorted(keys):
        conn.execute(
            "INSERT INTO area_keys (key, code) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, code)
        )
    return True


def parents(conn: Any) -> dict[str, str | None]:
    """Return every area's stored parent code (which need not be an area itself)."""
    return {row[0]: row[1] for row in conn.execute("SELECT code, parent FROM areas").fetchall()}


def replace_paths(conn: Any, pairs: Iterable[tuple[str, str]]) -> None:
    """Replace the ``(area, ancestor)`` closure with ``pairs``."""
    conn.execute("DELETE FROM area_paths")
    conn.executemany("INSERT INTO area_paths (area, ancestor) VALUES (?, ?)", list(pairs))


def all_areas(conn: Any) -> list[Any]:
    """Return every area (``code``, ``name``, ``aliases`` as JSON text, ``parent``), by code."""
    return list(
        conn.execute("SELECT code, name, aliases, parent FROM areas ORDER BY code").fetchall()
    )


def get(conn: Any, code: str) -> Any:
    """Return one area's row, or ``None``."""
    return conn.execute(
        "SELECT code, name, aliases, parent FROM areas WHERE code = ?", (code,)
    ).fetchone()


def by_key(conn: Any, key: str) -> list[Any]:
    """Return the areas (``code``, ``name``) a normalised name, alias or code names."""
    return list(
        conn.execute(
            "SELECT a.code, a.name FROM area_keys k JOIN areas a ON a.code = k.code"
            " WHERE k.key = ? ORDER BY a.code",
            (key,),
        ).fetchall()
    )


def keys_like(conn: Any, fragment: str, limit: int = 3) -> list[Any]:
    """Return areas (``code``, ``name``) with a key containing ``fragment`` or contained in it."""
    return list(
        conn.execute(
            "SELECT DISTINCT a.code, a.name FROM area_keys k JOIN areas a ON a.code = k.code"
            " WHERE k.key LIKE ? OR ? LIKE '%' || k.key || '%' ORDER BY a.code LIMIT ?",
            ("%" + fragment.replace("%", "").replace("_", "") + "%", fragment, limit),
        ).fetchall()
    )


def example_name(conn: Any) -> str | None:
    """Return the name of an area to quote in help texts: the deepest, lowest-coded one."""
    row = conn.execute(
        "SELECT a.name FROM areas a JOIN area_paths p ON p.area = a.code"
        " GROUP BY a.code, a.name ORDER BY COUNT(*) DESC, a.code LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def names(conn: Any, codes: Sequence[str]) -> dict[str, str]:
    """Return ``{code: name}`` for the known ``codes``."""
    if not codes:
        return {}
    rows = conn.execute(
        f"SELECT code, name FROM areas WHERE code IN ({','.join('?' * len(codes))})", list(codes)
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def attach(conn: Any, incident: str, codes: Sequence[str]) -> None:
    """Give a new incident its areas; an unknown code refuses the whole creation (422)."""
    if not codes:
        return
    known = names(conn, codes)
    for code in codes:
        if code not in known:
            raise Unprocessable(
                f"no area {code!r} (see GET /api/areas)", code="unknown_area", field="areas"
            )
    conn.execute("UPDATE incidents SET areas = ? WHERE id = ?", (json.dumps(list(codes)), incident))
    conn.executemany(
        "INSERT INTO incident_areas (area, incident) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(code, incident) for code in codes],
    )


def reached(conn: Any, incident: str) -> set[str]:
    """Return the area codes an incident reaches (see ``_REACHED``)."""
    return {row[0] for row in conn.execute(_REACHED, {"incident": incident}).fetchall()}


def incidents_in(conn: Any, code: str) -> list[str]:
    """Return the ids of incidents that reach area ``code``."""
    rows = conn.execute(
        "SELECT DISTINCT incident FROM incident_areas WHERE area IN"
        " (SELECT area FROM area_paths WHERE ancestor = :code"
        " UNION SELECT ancestor FROM area_paths WHERE area = :code) ORDER BY incident",
        {"code": code},
    ).fetchall()
    return [row[0] for row in rows]


def first_alert(conn: Any, incident: str, seq: int) -> bool:
    """Record entry ``seq`` as the incident's first SMS; ``False`` if it already had one."""
    row = conn.execute(
        "INSERT INTO area_alerts (incident, seq) VALUES (?, ?) ON CONFLICT DO NOTHING"
        " RETURNING seq",
        (incident, seq),
    ).fetchone()
    return row is not None


def subscribe(conn: Any, area: str, number: str, min_rank: int) -> None:
    """Subscribe a number to an area from ``min_rank`` up (a repeat changes the level)."""
    conn.execute(
        "INSERT INTO sms_area_subscribers (area, number, min_rank, created_at)"
        " VALUES (?, ?, ?, ?)"
        " ON CONFLICT (area, number) DO UPDATE SET min_rank = excluded.min_rank",
        (area, number, min_rank, format_ts(now())),
    )


def unsubscribe(conn: Any, number: str, area: str | None = None) -> int:
    """Delete a number's subscription to ``area``, or to every area; return how many."""
    if area is None:
        cur = conn.execute("DELETE FROM sms_area_subscribers WHERE number = ?", (number,))
    else:
        cur = conn.execute(
            "DELETE FROM sms_area_subscribers WHERE number = ? AND area = ?", (number, area)
        )
    return int(cur.rowcount)


def subscriber_count(conn: Any, area: str) -> int:
    """Count an area's SMS subscribers."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM sms_area_subscribers WHERE area = ?", (area,)
        ).fetchone()[0]
    )


def number_of(conn: Any, subscriber: int) -> str | None:
    """Return an area subscriber's number, or ``None`` once they have unsubscribed."""
    row = conn.execute(
        "SELECT number FROM sms_area_subscribers WHERE id = ?", (subscriber,)
    ).fetchone()
    return row[0] if row else None


def enqueue(
    conn: Any,
    channel: str,
    event: str,
    incident: str,
    seq: int,
    rank: int,
    next_at: float,
    stamp: str,
) -> int:
    """Queue entry ``seq`` once per phone subscribed to an area the incident reaches.

    Only subscriptions from ``rank`` down match; phones subscribed to the
    incident itself are left out (their own subscription carries the entry).
    The target is the phone's oldest matching subscription.
    """
    cur = conn.execute(
        "INSERT INTO deliveries (channel, target, event, incident, seq, next_at, created_at,"
        " updated_at) SELECT :channel, MIN(s.id), :event, :incident, :seq, :next_at, :stamp,"
        f" :stamp FROM sms_area_subscribers s WHERE s.min_rank <= :rank AND s.area IN ({_REACHED})"
        " AND NOT EXISTS (SELECT 1 FROM sms_subscribers i WHERE i.incident = :incident"
        " AND i.number = s.number) GROUP BY s.number ORDER BY MIN(s.id) ON CONFLICT DO NOTHING",
        {
            "channel": channel,
            "event": event,
            "incident": incident,
            "seq": seq,
            "next_at": next_at,
            "stamp": stamp,
            "rank": rank,
        },
    )
    return int(cur.rowcount)


def incident_code(conn: Any, incident: str) -> str | None:
    """Return an incident's SMS code (what an area alert tells residents to text)."""
    row = conn.execute("SELECT code FROM incidents WHERE id = ?", (incident,)).fetchone()
    return row[0] if row else None
