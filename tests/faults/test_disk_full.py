"""Fill the disk under the data directory mid-burst: clean 503s, nothing unacknowledged kept.

The data directory is a small tmpfs mounted for the test (root only: it is
skipped elsewhere, and fails under CI if it cannot run). A filler file takes
all but a little of the space, entries are posted until the store refuses,
then the filler is removed and the same running service must take appends
again; finally a fresh process-equivalent (a new app on the same directory)
must hold exactly the acknowledged entries, with the chain intact.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, make_token

from broadcaster.app import create_app
from broadcaster.log.fetch import fetch_timeline
from broadcaster.log.verify_timeline import check_timeline
from broadcaster.settings import Settings

SIZE = 16 * 1024 * 1024
#: Space left free when the disk is "full": a few appends' worth of WAL pages.
HEADROOM = 192 * 1024
BODY = "水位持续上涨，请沿河居民立即转移。" * 60  # about 1 KB of text per entry


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``SIZE`` bytes mounted for this test only."""
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        if under_ci():
            pytest.fail(f"{reason}; CI runs as root and must run this test", pytrace=False)
        pytest.skip(reason)
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file until only ``leave`` bytes are free; return it."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as out:
        out.truncate(0)
        remaining = max(free - leave, 0)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= out.write(chunk[: min(len(chunk), remaining)])
    return filler


async def serve(settings: Settings) -> TestClient:
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    return client


async def test_a_full_disk_refuses_cleanly_and_recovers(small_disk: Path) -> None:
    """503 storage_full with Retry-After while full; every 201 survives; appends resume."""
    settings = Settings.from_env(
        {}, data_dir=small_disk / "data", public_url="http://x.test", worker=False
    )
    client = await serve(settings)
    try:
        editor = bearer(await make_token(client, "editor"))
        response = await client.post(
            "/api/incidents", json={"title": "山洪", "severity": "severe"}, headers=editor
        )
        incident = (await response.json())["id"]
        url = f"/api/incidents/{incident}/entries"
        filler = fill(small_disk, HEADROOM)
        acked: dict[int, str] = {}
        refused: list[int] = []
        for n in range(400):
            response = await client.post(url, json={"body": f"{n} {BODY}"}, headers=editor)
            if response.status == 201:
                entry = await response.json()
                acked[entry["seq"]] = entry["hash"]
                continue
            refused.append(n)
            body = await response.json()
            assert response.status == 503, body
            assert body["error"] == "storage_full", body
            assert int(response.headers["Retry-After"]) > 0
            if len(refused) >= 3:
                break
        assert len(refused) == 3, "the disk never filled up"
        assert acked, "not one entry fitted before the disk was full"
        response = await client.get(url)
        assert response.status == 200, "reading goes on while the disk is full"
        assert [e["seq"] for e in (await response.json())["entries"]] == sorted(acked)

        filler.unlink()
        response = await client.post(url, json={"body": "恢复后的通报"}, headers=editor)
        assert response.status == 201, await response.text()
        entry = await response.json()
        acked[entry["seq"]] = entry["hash"]
    finally:
        await client.close()

    again = await serve(settings)
    try:
        data = await fetch_timeline(str(again.make_url("")), incident)
    finally:
        await again.close()
    stored = {e["seq"]: e["hash"] for e in data["entries"]}
    assert stored == acked, "the store holds exactly the acknowledged entries"
    report = check_timeline(incident, data["entries"], data["checkpoint"], data["keys"])
    assert report.ok, report.problems
    assert data["checkpoint"]["seq"] == max(acked)
