"""No false alarm while entries are being appended: verify 20 times under >= 50 appends/s.

``verify`` reads the log checkpoint first, then the incident's signed head,
then the timeline, and checks up to what the signatures cover; entries
appended meanwhile are reported as not yet signed, never as tampering.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient
from conftest import TIMEOUT, create_incident
from log_sites import verify

pytestmark = pytest.mark.slow

WRITERS = 4
RUNS = 20


async def test_verify_gives_no_false_alarm_under_appends(
    client: TestClient, editor: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """20 runs of verify during >= 50 appends/s on the same incident: all exit 0."""
    incident = (await create_incident(client, editor))["id"]
    posted = 0
    stop, flowing = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        nonlocal posted
        while not stop.is_set():
            response = await client.post(
                f"/api/incidents/{incident}/entries",
                json={"body": f"第{posted}次通报：水位上涨"},
                headers=editor,
            )
            assert response.status == 201, await response.text()
            posted += 1
            if posted >= 50:
                flowing.set()

    tasks = [asyncio.create_task(writer()) for _ in range(WRITERS)]
    try:
        await asyncio.wait_for(flowing.wait(), TIMEOUT)  # appends flow before the first run
        start, before = time.monotonic(), posted
        codes = []
        for _ in range(RUNS):
            codes.append(await verify(str(client.make_url("/")), incident))
        rate = (posted - before) / (time.monotonic() - start)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    out = capsys.readouterr()
    assert codes == [0] * RUNS, out.err
    assert rate >= 50, f"only {rate:.0f} appends/s during the runs"
    assert out.out.count("intact:") == RUNS
