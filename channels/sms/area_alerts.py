"""Standing SMS alerts by area: residents subscribe to an area, not to an incident they know.

``订阅 崂山区`` / ``订阅 370212`` / ``SUB 370212`` (a name, alias or code of the
site's areas, ``broadcaster.areas``) subscribes to new incidents reaching that
area at or above ``severe``; ``订阅 崂山区 全部`` to every level, and a repeat
changes the level. ``退订 崂山区`` leaves that area, ``TD`` everything.

An area subscriber receives, for each incident reaching the area at their
level: the incident's first entry sent with ``"sms": true`` (whenever it is
published, so an entry held for two-person review goes when approved), then
each later ``status`` entry sent with ``"sms": true`` (severity and status
changes). An incident counts at the higher of its severity before and after
the entry, so whoever got the alert also hears that it was downgraded. Every
such SMS carries the incident's code (``回“订阅SZK”收后续``) for those who
want every update. The fan-out runs in the append transaction (see
``broadcaster.store.areas.enqueue``): one SMS per phone and entry, whether the
phone matches through several areas or through an area and the incident.
"""

from __future__ import annotations

import time
from typing import Any

from broadcaster.areas import DEFAULT_RANK, RANKS, key_of
from broadcaster.settings import Settings
from broadcaster.store import areas as store
from broadcaster.timeline.model import Entry

from .commands import Command
from .delivery import AREA_EVENT, CHANNEL
from .replies import level_text

#: An area takes at most this many SMS subscribers (a district's population, generously).
MAX_AREA_SUBSCRIBERS = 2_000_000
Reply = tuple[str, dict[str, Any]]


def enqueue_area_sms(conn: Any, incident: Any, entry: Entry) -> int:
    """Queue the entry to area subscribers if it is an area alert (see the module docstring)."""
    record = entry.record
    if not record.get("sms") or not incident.get("areas"):
        return 0
    first = store.first_alert(conn, entry.incident, entry.seq)
    if not first and record["kind"] != "status":
        return 0
    before = RANKS.get(incident["severity"], 0)
    after = RANKS.get(record.get("severity") or incident["severity"], 0)
    stamp = record["posted_at"]
    return store.enqueue(
        conn, CHANNEL, AREA_EVENT, entry.incident, entry.seq, max(before, after), time.time(), stamp
    )


def _choices(rows: list[Any], settings: Settings) -> str:
    if settings.lang == "en":
        return ", ".join(f"{row['name']} ({row['code']})" for row in rows)
    return "、".join(f"{row['name']}（{row['code']}）" for row in rows)


def act_on_area(conn: Any, command: Command, number: str, settings: Settings) -> Reply | None:
    """Apply a command whose target names an area; ``None`` if it names none."""
    found = store.by_key(conn, key_of(command.code or ""))
    if not found:
        return None
    if len(found) > 1:
        return "area_ambiguous", {"target": command.code, "choices": _choices(found, settings)}
    code, name = found[0]["code"], found[0]["name"]
    if command.action == "unsubscribe":
        store.unsubscribe(conn, number, code)
        return "area_unsubscribed", {"code": code, "name": name}
    if store.subscriber_count(conn, code) >= MAX_AREA_SUBSCRIBERS:
        return "area_full", {"code": code, "name": name}
    store.subscribe(conn, code, number, RANKS["minor"] if command.every else DEFAULT_RANK)
    level = level_text(settings, command.every)
    return "area_subscribed", {"code": code, "name": name, "level": level}


def unknown_target(conn: Any, target: str, settings: Settings) -> Reply | None:
    """Answer a target that looks like an area (Chinese or digits) but names none."""
    if target.isascii() and not any(ch.isdigit() for ch in target):
        return None  # a Latin word: the incident-code answer fits better
    close = store.keys_like(conn, key_of(target))
    if close:
        return "area_suggest", {"target": target, "choices": _choices(close, settings)}
    return "unknown_area", {"target": target, "example": store.example_name(conn) or "370212"}
