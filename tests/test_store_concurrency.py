"""Concurrent appends through the real server: gapless seqs, one unforked chain."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient
from conftest import create_incident

from broadcaster.log.verify_timeline import check_timeline


async def burst(client: TestClient, headers: dict[str, str], incident_id: str, n: int) -> list[int]:
    """Post ``n`` entries at once and return the seqs of the 201 answers."""
    url = f"/api/incidents/{incident_id}/entries"
    answers = await asyncio.gather(
        *(client.post(url, json={"body": f"第{i}次通报"}, headers=headers) for i in range(n))
    )
    assert [a.status for a in answers] == [201] * n
    return [(await a.json())["seq"] for a in answers]


async def verified(client: TestClient, incident_id: str) -> list[int]:
    """Download the timeline, check it like ``broadcaster verify`` and return its seqs."""
    entries = (await (await client.get(f"/api/incidents/{incident_id}/entries")).json())["entries"]
    checkpoint = await (await client.get(f"/api/incidents/{incident_id}/checkpoint")).json()
    keys = await (await client.get("/.well-known/broadcaster-keys.json")).json()
    report = check_timeline(incident_id, entries, checkpoint, keys)
    assert report.ok, report.problems
    return [e["seq"] for e in entries]


async def test_fifty_concurrent_posts_get_seqs_one_to_fifty(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Fifty posts at once get exactly seqs 1..50 and the chain verifies."""
    incident = (await create_incident(client, editor))["id"]
    assert sorted(await burst(client, editor, incident, 50)) == list(range(1, 51))
    assert await verified(client, incident) == list(range(1, 51))


async def test_five_incidents_at_once_each_stay_gapless(
    client: TestClient, editor: dict[str, str]
) -> None:
    """Fifty posts to each of five incidents at once give each its own gapless, verified chain."""
    ids = [(await create_incident(client, editor))["id"] for _ in range(5)]
    results = await asyncio.gather(*(burst(client, editor, i, 50) for i in ids))
    for incident, seqs in zip(ids, results, strict=True):
        assert sorted(seqs) == list(range(1, 51))
        assert await verified(client, incident) == list(range(1, 51))
