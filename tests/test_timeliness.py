"""Tests for broadcaster.accountability.timeliness and GET /api/incidents/{id}/metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from broadcaster.accountability.promises import refresh_overdue
from broadcaster.accountability.timeliness import timeliness
from broadcaster.clock import format_ts, now, parse_ts
from tests.conftest import create_incident, post_entry

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return format_ts(T0 + timedelta(minutes=minutes))


def record(seq: int, minutes: float, kind: str = "update", **fields: Any) -> dict[str, Any]:
    base = {"seq": seq, "kind": kind, "posted_at": at(minutes), "status": None}
    return {**base, "update_interval_minutes": None, **fields}


def incident(**fields: Any) -> dict[str, Any]:
    base = {"id": "szk", "started_at": at(0), "severity": "severe", "status": "active"}
    return {**base, "update_interval_minutes": 60, **fields}


# Hourly promise, then every 30 minutes from 04:30. Gaps: 50, 160, 30, 40, 30 minutes.
SYNTHETIC = [
    record(1, 30),  # first window (00:00 + 60) kept
    record(2, 80),  # kept (due 01:30)
    record(3, 240),  # 02:20 and 03:20 passed: 2 missed
    record(4, 270, kind="status", update_interval_minutes=30),  # kept (due 05:00)
    record(5, 310),  # due 05:00 under 30 min: 1 missed
    record(6, 340),  # exactly on time (05:40): kept
]


def test_synthetic_timeline_with_known_gaps() -> None:
    """Every figure of a timeline with known gaps and an interval change is exact."""
    result = timeliness(
        incident(update_interval_minutes=30), SYNTHETIC, T0 + timedelta(hours=7),
        initial_interval=60,
    )  # fmt: skip
    assert result["updates"] == 6
    assert result["updates_by_kind"] == {"update": 5, "status": 1}
    assert result["first_disclosure_at"] == at(30)
    assert result["time_to_first_disclosure_seconds"] == 1800.0
    assert result["first_disclosure_due"] == at(300)
    assert result["first_disclosure_late"] is False
    assert result["median_gap_seconds"] == 2400.0
    assert result["longest_gap_seconds"] == 9600.0
    assert result["longest_gap_after_seq"] == 2
    assert result["next_update_due"] == at(370)
    assert result["overdue"] is True
    assert result["overdue_seconds"] == 3000.0
    # kept: windows 1, 2, 4, 6; missed: 2 (before seq 3) + 1 (before seq 5) + 2 open (06:10, 06:40)
    assert (result["promises_kept"], result["promises_missed"]) == (4, 5)
    assert result["interval_changes"] == 1


def test_deadline_not_yet_reached_counts_nowhere() -> None:
    """Before the open window's deadline nothing is overdue and nothing is missed."""
    result = timeliness(incident(), [record(1, 30)], T0 + timedelta(minutes=89))
    assert result["overdue"] is False and result["overdue_seconds"] is None
    assert (result["promises_kept"], result["promises_missed"]) == (1, 0)
    assert result["median_gap_seconds"] is None and result["longest_gap_seconds"] is None


def test_resolved_incident_makes_no_more_promises() -> None:
    """After a resolving status entry nothing is due, however long the silence."""
    entries = [record(1, 30), record(2, 50, kind="status", status="resolved")]
    result = timeliness(incident(status="resolved"), entries, T0 + timedelta(days=3))
    assert result["next_update_due"] is None and result["overdue"] is False
    assert (result["promises_kept"], result["promises_missed"]) == (2, 0)


def test_late_first_disclosure_is_flagged_for_severe_incidents() -> None:
    """Over 5 hours to the first entry is late for extreme/severe, not for moderate."""
    late = [record(1, 301)]
    assert timeliness(incident(severity="extreme"), late, T0 + timedelta(hours=6))[
        "first_disclosure_late"
    ]
    moderate = timeliness(incident(severity="moderate"), late, T0 + timedelta(hours=6))
    assert moderate["first_disclosure_late"] is False and moderate["first_disclosure_due"] is None
    silent = timeliness(incident(update_interval_minutes=None), [], T0 + timedelta(hours=5.1))
    assert silent["first_disclosure_late"] is True
    assert silent["first_disclosure_at"] is None and silent["updates"] == 0


async def test_metrics_endpoint_judges_windows_before_an_interval_change(
    client: TestClient, editor: dict[str, str]
) -> None:
    """An interval change is a timeline entry, and the windows before it keep the old promise."""
    started = format_ts(now() - timedelta(minutes=150))
    created = await create_incident(client, editor, started_at=started, update_interval_minutes=60)
    first = await post_entry(client, editor, created["id"])
    change = await post_entry(
        client, editor, created["id"], kind="status", body="", update_interval_minutes=30
    )
    assert change["kind"] == "status" and change["update_interval_minutes"] == 30
    response = await client.get(f"/api/incidents/{created['id']}/metrics")
    assert response.status == 200
    metrics = await response.json()
    current = await (await client.get(f"/api/incidents/{created['id']}")).json()
    assert current["update_interval_minutes"] == 30
    assert metrics["next_update_due"] == current["next_update_due"]
    assert metrics["next_update_due"] == format_ts(
        parse_ts(change["posted_at"]) + timedelta(minutes=30)
    )
    # 150 minutes of silence under the hourly promise: 2 missed; the change came in time.
    assert (metrics["promises_kept"], metrics["promises_missed"]) == (1, 2)
    assert metrics["first_disclosure_at"] == first["posted_at"]
    assert 150 * 60 <= metrics["time_to_first_disclosure_seconds"] < 151 * 60
    assert metrics["overdue"] is False and metrics["updates"] == 2
    assert metrics["questions"] == {
        "pending": 0, "answered": 0, "dismissed": 0, "folded": 0, "turned_away": 0,
        "median_answer_seconds": None,
    }  # fmt: skip


async def test_metrics_of_unknown_incident_is_404(client: TestClient) -> None:
    """Metrics of an incident that does not exist answer 404 incident_not_found."""
    response = await client.get("/api/incidents/nope/metrics")
    assert response.status == 404
    assert (await response.json())["error"] == "incident_not_found"


async def test_overdue_gauge_counts_incidents_past_due(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """The /metrics gauge counts active incidents past their promised update."""
    started = format_ts(now() - timedelta(minutes=90))
    await create_incident(client, editor, started_at=started, update_interval_minutes=60)
    fresh = await create_incident(client, editor, update_interval_minutes=60)
    await post_entry(client, editor, fresh["id"])
    assert await refresh_overdue(client.app) == 1
    text = await (await client.get("/metrics", headers=admin)).text()
    assert "broadcaster_incidents_overdue 1.0" in text
