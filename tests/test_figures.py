"""Tests for key figures: history at /figures and the refusal of quiet decreases."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import create_incident, post_entry


async def test_history_and_current_values(client: TestClient, editor: dict[str, str]) -> None:
    """Each figure's current value is its latest, and its history lists every point."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    one = await post_entry(client, editor, iid, figures={"deaths": 0, "injured": 3})
    await post_entry(client, editor, iid, body="道路抢通中。")
    three = await post_entry(client, editor, iid, figures={"injured": 12, "evacuated": 3400})
    four = await post_entry(client, editor, iid, figures={"evacuated": 2100, "x-roads-closed": 4})
    response = await client.get(f"/api/incidents/{iid}/figures")
    assert response.status == 200
    data = await response.json()
    assert data["current"] == {"deaths": 0, "injured": 12, "evacuated": 2100, "x-roads-closed": 4}
    assert list(data["current"]) == ["deaths", "injured", "evacuated", "x-roads-closed"]
    assert data["history"]["injured"] == [
        {"seq": 1, "value": 3, "posted_at": one["posted_at"]},
        {"seq": 3, "value": 12, "posted_at": three["posted_at"]},
    ]
    # Evacuation may go down in any entry: people go home.
    assert [p["value"] for p in data["history"]["evacuated"]] == [3400, 2100]
    assert data["history"]["evacuated"][1]["posted_at"] == four["posted_at"]


async def test_quiet_decrease_is_refused_and_nothing_appended(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Lowering a cumulative figure in an update answers 422 figure_decrease, head unchanged."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid, figures={"deaths": 3, "injured": 12})
    before = await (await client.get(f"/api/incidents/{iid}")).json()
    response = await client.post(
        f"/api/incidents/{iid}/entries",
        json={"body": "最新通报。", "figures": {"deaths": 2}},
        headers=editor,
    )
    assert response.status == 422
    error = await response.json()
    assert error["error"] == "figure_decrease"
    assert error["field"] == "figures.deaths"
    assert (error["current"], error["seq"]) == (3, 1)
    after = await (await client.get(f"/api/incidents/{iid}")).json()
    assert after["head"] == before["head"]
    figures = await (await client.get(f"/api/incidents/{iid}/figures")).json()
    assert figures["current"]["deaths"] == 3


async def test_correction_that_says_why_may_lower_a_figure(
    client: TestClient, editor: dict[str, str]
) -> None:
    """A correction naming the reason lowers the figure; the history keeps the old value."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid, figures={"deaths": 3})
    fix = await post_entry(
        client, editor, iid, kind="correction", corrects=1,
        body="经核实，其中一人为重复统计，死亡人数更正为2人。", figures={"deaths": 2},
    )  # fmt: skip
    assert fix["figures"] == {"deaths": 2}
    figures = await (await client.get(f"/api/incidents/{iid}/figures")).json()
    assert figures["current"]["deaths"] == 2
    assert [p["value"] for p in figures["history"]["deaths"]] == [3, 2]
    # Back at 2, a later update may not lower it again quietly, nor keep it from rising.
    await post_entry(client, editor, iid, figures={"deaths": 2})
    await post_entry(client, editor, iid, figures={"deaths": 4})


async def test_redacted_entries_figures_are_excluded(
    client: TestClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """A redacted entry's figures leave the history and no longer bind later entries."""
    incident = await create_incident(client, editor)
    iid = incident["id"]
    await post_entry(client, editor, iid, figures={"injured": 5})
    await post_entry(client, editor, iid, figures={"injured": 50})
    response = await client.post(
        f"/api/incidents/{iid}/entries/2/redact",
        json={"basis": "政府信息公开条例第十五条", "reason": "数字未经核实"},
        headers=admin,
    )
    assert response.status == 201, await response.text()
    figures = await (await client.get(f"/api/incidents/{iid}/figures")).json()
    assert [(p["seq"], p["value"]) for p in figures["history"]["injured"]] == [(1, 5)]
    assert figures["current"] == {"injured": 5}
    await post_entry(client, editor, iid, figures={"injured": 7})


async def test_figures_of_unknown_incident_is_404(client: TestClient) -> None:
    """Figures of an unknown incident answer 404."""
    response = await client.get("/api/incidents/nope/figures")
    assert response.status == 404
