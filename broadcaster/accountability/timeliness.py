"""Compute whether an incident keeps its timeliness promises, from its timeline alone.

Pure: an incident dict, its entries' records (in seq order) and "now" go in, a
JSON-ready dict comes out; no clock, no I/O, so tests pass exact timestamps.

Definitions (all times are ``posted_at``, the server's clock):

- A *disclosure* is any entry, whatever its kind. This is the same rule the
  incident's ``next_update_due`` follows (it is measured from the last entry
  of any kind), so the page, the API and ``/metrics`` never disagree. The
  trade-off: an answer or a correction also resets the clock.
- A *promise window* opens at ``started_at`` and again at every entry, while
  the incident is active and has an ``update_interval_minutes`` (I). A status
  entry that changes I or resolves the incident applies from that entry on.
- Each window makes deadlines at anchor + I, anchor + 2I, ... The window is
  *kept* (counts 1 in ``promises_kept``) when the next entry is posted at or
  before anchor + I. Otherwise every deadline that passed strictly before the
  next entry counts 1 in ``promises_missed``: a department silent for five
  hours under an hourly promise broke four promises, not one (the fifth
  deadline, exactly at the next entry, is met). The open window (after the
  last entry) adds the deadlines already passed ``now`` to the missed count
  and nothing to kept; a deadline not reached yet counts nowhere.
- ``overdue`` is true when the incident is active, has an interval and ``now``
  is past ``next_update_due`` (last entry, or ``started_at``, plus I).
- Time to first disclosure is from ``started_at`` to the first entry (never
  below 0: ``started_at`` may be given later than the first post). For
  ``extreme``/``severe`` incidents the first disclosure is due within
  5 hours; ``first_disclosure_late`` is true when it came later, or has not
  come and the 5 hours are over.
- Gaps are between consecutive entries (the silence since the last entry is
  ``overdue_seconds`` when it matters); median and longest are in seconds.

Failure mode: the interval an incident was created with is not kept in its
timeline, only the current one. When an entry changed the interval, the
caller must pass ``initial_interval`` (``broadcaster.accountability.metrics_api``
records it as each change is appended); if it cannot, windows before the
first change count as having no promise.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..clock import format_ts, parse_ts

FIRST_DISCLOSURE_LIMIT = timedelta(hours=5)
URGENT = frozenset({"extreme", "severe"})
_UNSET: Any = object()


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def _seconds(ms: int | float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def _judge(anchor: datetime, interval_min: int, until: datetime) -> tuple[int, int]:
    """Return (kept, missed) for a window from ``anchor`` closed by an entry at ``until``."""
    elapsed, interval = _ms(until - anchor), interval_min * 60_000
    if elapsed <= interval:
        return 1, 0
    return 0, -(-elapsed // interval) - 1


def _passed(anchor: datetime, interval_min: int, now: datetime) -> int:
    """Count deadlines of the open window strictly before ``now``."""
    elapsed, interval = _ms(now - anchor), interval_min * 60_000
    return 0 if elapsed <= interval else -(-elapsed // interval) - 1


def timeliness(
    incident: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    initial_interval: int | None = _UNSET,
) -> dict[str, Any]:
    """Return the timeliness figures of ``incident`` at ``now`` (see the module docstring).

    ``entries`` are records in seq order (only ``seq``, ``kind``, ``posted_at``,
    ``status`` and ``update_interval_minutes`` are read). ``initial_interval``
    defaults to the incident's current interval when no entry changed it.
    """
    started = parse_ts(incident["started_at"])
    changes = [e for e in entries if e.get("update_interval_minutes") is not None]
    if initial_interval is _UNSET:
        initial_interval = None if changes else incident.get("update_interval_minutes")
    interval: int | None = initial_interval
    status, anchor = "active", started
    kept = missed = 0
    times: list[datetime] = []
    by_kind: dict[str, int] = {}
    for entry in entries:
        posted = parse_ts(entry["posted_at"])
        if status == "active" and interval:
            k, m = _judge(anchor, interval, posted)
            kept, missed = kept + k, missed + m
        if entry.get("update_interval_minutes") is not None:
            interval = entry["update_interval_minutes"]
        if entry.get("kind") == "status" and entry.get("status"):
            status = entry["status"]
        anchor = posted
        times.append(posted)
        by_kind[entry["kind"]] = by_kind.get(entry["kind"], 0) + 1

    # The incident row is the truth for the open window (as for next_update_due).
    status = incident.get("status") or status
    interval = incident.get("update_interval_minutes", interval)
    next_due = anchor + timedelta(minutes=interval) if status == "active" and interval else None
    overdue = next_due is not None and now > next_due
    if overdue and interval:
        missed += _passed(anchor, interval, now)

    gaps = [_ms(b - a) for a, b in zip(times, times[1:], strict=False)]
    longest_at = max(range(len(gaps)), key=gaps.__getitem__) if gaps else None
    first = times[0] if times else None
    urgent = str(incident.get("severity")) in URGENT
    due_first = started + FIRST_DISCLOSURE_LIMIT if urgent else None
    late = due_first is not None and (first > due_first if first else now > due_first)
    return {
        "incident": incident.get("id"),
        "computed_at": format_ts(now),
        "status": status,
        "started_at": format_ts(started),
        "update_interval_minutes": interval,
        "next_update_due": format_ts(next_due) if next_due else None,
        "overdue": overdue,
        "overdue_seconds": _seconds(_ms(now - next_due)) if overdue and next_due else None,
        "first_disclosure_at": format_ts(first) if first else None,
        "time_to_first_disclosure_seconds": _seconds(max(0, _ms(first - started)))
        if first
        else None,
        "first_disclosure_due": format_ts(due_first) if due_first else None,
        "first_disclosure_late": late,
        "updates": len(times),
        "updates_by_kind": by_kind,
        "median_gap_seconds": _seconds(statistics.median(gaps)) if gaps else None,
        "longest_gap_seconds": _seconds(gaps[longest_at]) if longest_at is not None else None,
        "longest_gap_after_seq": entries[longest_at]["seq"] if longest_at is not None else None,
        "promises_kept": kept,
        "promises_missed": missed,
        "interval_changes": len(changes),
    }
