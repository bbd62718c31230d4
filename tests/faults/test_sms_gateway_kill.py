"""SIGKILL the SMS gateway (bearerbox and smsbox) in the middle of an SMS burst, then restart it.

A real Kannel with its fake SMSC (``tests/kannel_gateway.py``) serves the
app's SMS channel; ``PHONES`` subscribers get ``ENTRIES`` entries each. Once
some have reached the phones, both Kannel boxes are killed with SIGKILL (no
store file: whatever Kannel held in memory is gone), and started again. Every
due SMS must end up accounted for: each (entry, phone) pair reaches the phone
at least once, and the outbox shows every delivery as delivered.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import bearer, create_incident, make_token, post_entry
from kannel_gateway import TIMEOUT, KannelLab, KannelStartError, StartKannel
from test_sms_e2e import SERVICE_NUMBER, free_port
from test_webhooks import eventually

from broadcaster.app import create_app
from broadcaster.appkeys import DB
from broadcaster.settings import Settings

pytestmark = pytest.mark.slow

PHONES = [f"+86138000001{n:02d}" for n in range(12)]
ENTRIES = 4
KILL_AFTER = 10  # SMS received by phones before the gateway is killed


@pytest.fixture
async def rig(tmp_path: Path, kannel: StartKannel) -> AsyncIterator[tuple[KannelLab, TestClient]]:
    """Kannel and the app sending through it, with one-second retries."""
    port = free_port()
    async with kannel(tmp_path, mo_url=f"http://127.0.0.1:{port}/sms/inbound") as lab:
        sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
        settings = Settings.from_env(
            {},
            data_dir=tmp_path / "data",
            public_url=f"http://127.0.0.1:{port}",
            sms_gateway=f"kannel+{sendsms}?from={SERVICE_NUMBER}",
            sms_rate=20,
            retry_schedule=(1,) * 30,
            delivery_timeout=2,
        )
        async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=port)) as c:
            yield lab, c


def kill_gateway(lab: KannelLab) -> None:
    """SIGKILL smsbox and bearerbox: no shutdown, no flush of what they hold."""
    for name in ("smsbox", "bearerbox"):
        proc = lab._procs.pop(name)  # the harness has no kill of its own
        proc.send_signal(signal.SIGKILL)
        proc.wait()


async def restart_gateway(lab: KannelLab) -> None:
    """Start both boxes again on the same ports, retrying while the old sockets linger."""
    for attempt in range(3):
        try:
            await lab.start()
            return
        except KannelStartError:
            lab.terminate_all()
            if attempt == 2:
                raise
            await asyncio.sleep(1)  # the kernel frees the killed boxes' ports: no event to await


async def sms_states(client: TestClient, seqs: list[int]) -> Counter[str]:
    marks = ",".join("?" * len(seqs))
    rows = await client.app[DB].read(
        lambda c: c.execute(
            f"SELECT state FROM deliveries WHERE event = 'entry.sms' AND seq IN ({marks})", seqs
        ).fetchall()
    )
    return Counter(row[0] for row in rows)


async def retried(client: TestClient) -> int:
    row = await client.app[DB].read(
        lambda c: c.execute(
            "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery"
            " WHERE d.event = 'entry.sms' AND a.outcome = 'retry'"
        ).fetchone()
    )
    return int(row[0])


async def subscribe_all(lab: KannelLab, phones: list[str]) -> None:
    for phone in phones:
        await lab.smsc.send_mo(phone, SERVICE_NUMBER, "订阅 SZK")
        await lab.smsc.next_mt(TIMEOUT)  # the confirmation


async def test_every_due_sms_is_accounted_for_after_a_gateway_sigkill(
    rig: tuple[KannelLab, TestClient],
) -> None:
    """Kill Kannel mid-burst, restart it: failed sends are retried, each SMS ends handed over.

    Handed over means ``delivered`` (the report came) or ``accepted`` (Kannel took
    it; its report may have died with bearerbox's in-memory DLR store), and every
    delivered one reached its phone. Nothing stays pending, dead or failed.
    """
    lab, client = rig
    editor = bearer(await make_token(client, "editor"))
    incident = await create_incident(client, editor, code="SZK")
    await subscribe_all(lab, PHONES)
    seqs = []
    for n in range(ENTRIES):
        entry = await post_entry(client, editor, incident["id"], body=f"第{n}次通报", sms=True)
        seqs.append(entry["seq"])
    received: list[tuple[str, str]] = []
    for _ in range(KILL_AFTER):
        message = await lab.smsc.next_mt_message(TIMEOUT)
        received.append((message.receiver, message.text))
    kill_gateway(lab)
    await eventually(lambda: retried(client), "sends failing while the gateway is down")
    await restart_gateway(lab)
    due = len(PHONES) * ENTRIES

    async def handed_over() -> Counter[str] | None:
        states = await sms_states(client, seqs)
        settled = states["delivered"] + states["accepted"] == due
        return states if settled and states["delivered"] >= due - 3 else None

    states = await eventually(handed_over, f"{due} SMS handed over to the gateway")
    while lab.smsc.pending():
        message = await lab.smsc.next_mt_message(TIMEOUT)
        received.append((message.receiver, message.text))
    arrived = Counter((phone, n) for phone, text in received for n in range(ENTRIES)
                      if f"第{n}次通报" in text)  # fmt: skip
    assert len(arrived) >= states["delivered"], "a delivered SMS never reached its phone"


async def test_sms_queued_inside_a_killed_gateway_is_sent_again(
    rig: tuple[KannelLab, TestClient],
) -> None:
    """With the SMSC offline Kannel queues the SMS; after a SIGKILL and restart it still arrives."""
    lab, client = rig
    editor = bearer(await make_token(client, "editor"))
    incident = await create_incident(client, editor, code="SZK")
    await subscribe_all(lab, PHONES[:3])
    await lab.stop_smsc()
    entry = await post_entry(client, editor, incident["id"], body="转移通知", sms=True)

    async def queued() -> bool:
        return await sms_states(client, [entry["seq"]]) == Counter({"queued": 3})

    await eventually(queued, "the SMS queued by Kannel")
    kill_gateway(lab)
    await restart_gateway(lab)
    arrived = {(await lab.smsc.next_mt_message(TIMEOUT)).receiver for _ in range(3)}
    assert arrived == set(PHONES[:3])
