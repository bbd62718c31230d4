"""Kill ``broadcaster worker`` with SIGKILL in the middle of deliveries: nothing is lost.

Runs the real commands as subprocesses: ``broadcaster serve`` with its worker
off, and ``broadcaster worker`` on the same data directory (SQLite) or the same
database (PostgreSQL). The receiver holds
every request open until the worker is killed, so the kill lands mid-attempt.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from conftest import BACKENDS, TIMEOUT
from test_webhooks import eventually
from webhook_receiver import Receiver

pytestmark = pytest.mark.slow

ENTRIES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Start ``broadcaster`` subcommands with one environment; kill what is left at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "broadcaster.cli", *args]

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                self.command(*args), env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append(proc)
        return proc

    def output(self) -> str:
        logs = sorted(self.logs.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(params=BACKENDS)
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    """An environment for the commands: a fresh store (SQLite or PostgreSQL), quick retries."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(
        BROADCASTER_DATA_DIR=str(tmp_path / "data"),
        BROADCASTER_HOST="127.0.0.1",
        BROADCASTER_PORT=str(port),
        BROADCASTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        BROADCASTER_WEBHOOK_ALLOW="127.0.0.1",
        BROADCASTER_RETRY_SCHEDULE="0,1,1,1,1,1,1,1",
        BROADCASTER_DELIVERY_TIMEOUT="2",
    )
    if request.param == "postgresql":
        env.update(
            BROADCASTER_DATABASE_URL=request.getfixturevalue("database_url"),
            BROADCASTER_REDIS_URL=request.getfixturevalue("redis_url"),
        )
    processes = Processes(env, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


async def test_sigkill_mid_delivery_loses_nothing(procs: Processes) -> None:
    """After the worker is killed and restarted, every entry arrives; repeats keep their id."""
    made = await asyncio.to_thread(
        subprocess.run,
        procs.command(
            "token", "create", "--name", "ops", "--department", "应急局", "--role", "admin"
        ),
        env=procs.env,
        capture_output=True,
        check=True,
    )
    headers = {"Authorization": "Bearer " + made.stdout.decode().strip()}
    base = procs.env["BROADCASTER_PUBLIC_URL"]
    procs.start("serve", "serve", BROADCASTER_WORKER="0")
    first_worker = procs.start("worker-1", "worker")
    async with Receiver() as receiver, aiohttp.ClientSession(base_url=base) as http:

        async def up() -> bool:
            try:
                async with http.get("/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        # Subprocesses start slowly on a loaded machine: allow them three time units.
        try:
            await eventually(up, "broadcaster serve to answer", 3 * TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; what the processes printed:\n{procs.output()}") from exc
        receiver.hold = asyncio.Event()
        body = {"url": receiver.url}
        async with http.post("/api/webhooks", json=body, headers=headers) as response:
            assert response.status == 201, await response.text()
        incident = {"title": "崂山区山洪", "severity": "severe"}
        async with http.post("/api/incidents", json=incident, headers=headers) as response:
            incident_id = (await response.json())["id"]
        for n in range(ENTRIES):
            path = f"/api/incidents/{incident_id}/entries"
            async with http.post(path, json={"body": f"第{n}条"}, headers=headers) as response:
                assert response.status == 201

        await asyncio.wait_for(receiver.holding.wait(), 3 * TIMEOUT)
        first_worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first_worker.wait)
        in_flight = len(receiver.received)
        hold, receiver.hold = receiver.hold, None
        hold.set()
        procs.start("worker-2", "worker")

        async def all_delivered() -> list[dict[str, object]] | None:
            async with http.get("/api/webhooks/1/deliveries", headers=headers) as response:
                found = (await response.json())["deliveries"]
            done = len(found) == ENTRIES and all(d["state"] == "delivered" for d in found)
            return found if done else None

        deliveries = await eventually(
            all_delivered, "every delivery after the restart", 3 * TIMEOUT
        )

    seen: dict[str, set[int]] = {}
    for request in receiver.received:
        seq = json.loads(request.body)["data"]["seq"]
        seen.setdefault(request.headers["webhook-id"], set()).add(seq)
    assert sorted(s for seqs in seen.values() for s in seqs) == list(range(1, ENTRIES + 1))
    assert all(len(seqs) == 1 for seqs in seen.values())
    assert len(receiver.received) >= ENTRIES + 1 and in_flight >= 1
    outcomes = [[a["outcome"] for a in d["attempts"]] for d in deliveries]  # type: ignore[index]
    assert sum(o[0] == "interrupted" for o in outcomes) >= in_flight
    assert all(o[-1] == "ok" for o in outcomes)
