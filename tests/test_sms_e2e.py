"""Test SMS end to end through a real Kannel (bearerbox + smsbox) and a fake SMSC (the phones).

A resident's phone texts the service number; Kannel calls the app's
``/sms/inbound``; the app answers by SMS through Kannel's sendsms; the fake
SMSC receives what the handset would show; Kannel reports delivery to
``/sms/dlr``. Marked ``kannel``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import backend_options, bearer, create_incident, make_token, post_entry
from kannel_gateway import TIMEOUT, KannelLab, StartKannel
from test_webhooks import eventually

from broadcaster.app import create_app
from broadcaster.appkeys import DB
from broadcaster.settings import Settings
from channels.sms.text import compose

SERVICE_NUMBER = "12379"
PHONES = ["+8613800000001", "+8613800000002", "+8613800000003"]
BODY = (
    "据区气象台预报，今夜至明日白天我区将出现特大暴雨，局地伴有雷电和短时强降水。"
    "请沿河、低洼地带及地质灾害隐患点群众立即转移到安全区域，不要涉水过河，"
    "不要在危房内停留。转移安置点：区第一中学、沙子口中心小学。如需帮助请拨打12345。"
)


@dataclass
class Rig:
    """Kannel, the app wired to it, and an editor's token."""

    lab: KannelLab
    client: TestClient
    editor: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def rig(
    tmp_path: Path, kannel: StartKannel, backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    """Start Kannel with its MO URL on the app's port, then the app sending through Kannel."""
    port = free_port()
    async with kannel(tmp_path, mo_url=f"http://127.0.0.1:{port}/sms/inbound") as lab:
        sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
        settings = Settings.from_env(
            {},
            data_dir=tmp_path / "data",
            public_url=f"http://127.0.0.1:{port}",
            sms_gateway=f"kannel+{sendsms}?from={SERVICE_NUMBER}",
            sms_signature="崂山区应急管理局",
            retry_schedule=(1,) * 30,
            delivery_timeout=2,
            **backend_options(backend, request),
        )
        app = create_app(settings)
        async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
            editor = bearer(await make_token(client, "editor"))
            yield Rig(lab, client, editor)


async def subscribe(rig: Rig, phone: str, code: str) -> str:
    """Text ``订阅 CODE`` from ``phone`` and return the confirmation the phone receives."""
    await rig.lab.smsc.send_mo(phone, SERVICE_NUMBER, f"订阅 {code}")
    sender, receiver, text = await rig.lab.smsc.next_mt(TIMEOUT)
    assert (sender, receiver) == (SERVICE_NUMBER, phone)
    return text


async def states(rig: Rig, seq: int) -> list[str]:
    rows = await rig.client.app[DB].read(
        lambda c: c.execute(
            "SELECT state FROM deliveries WHERE event = 'entry.sms' AND seq = ? ORDER BY id",
            (seq,),
        ).fetchall()
    )
    return [row[0] for row in rows]


async def all_delivered(rig: Rig, seq: int, count: int) -> None:
    async def probe() -> bool:
        return await states(rig, seq) == ["delivered"] * count

    await eventually(probe, f"{count} delivery reports for seq {seq}")


def expected_text(incident: dict[str, Any], entry: dict[str, Any], port: int) -> str:
    return compose(
        signature="崂山区应急管理局",
        title=incident["title"],
        body_markdown=entry["body"],
        link=f"http://127.0.0.1:{port}/incidents/{incident['id']}/entries/{entry['seq']}",
        unsubscribe_hint="回TD退订",
        max_segments=3,
    )


async def test_subscribe_receive_and_unsubscribe_from_a_phone(rig: Rig) -> None:
    """A phone subscribes by SMS, gets the entry intact in at most 3 parts, leaves with TD."""
    incident = await create_incident(rig.client, rig.editor, code="SZK", title="沙子口山洪")
    for phone in PHONES[:2]:
        confirmation = await subscribe(rig, phone, "SZK")
        assert confirmation.startswith("【崂山区应急管理局】已订阅「沙子口山洪」")
    entry = await post_entry(rig.client, rig.editor, incident["id"], body=BODY, sms=True)
    got = {}
    for _ in PHONES[:2]:
        message = await rig.lab.smsc.next_mt_message(TIMEOUT)
        got[message.receiver] = message
    port = rig.client.port
    for message in got.values():
        assert message.text == expected_text(incident, entry, port)
        assert message.coding == "ucs2" and 1 < message.parts <= 3
        assert "?" not in message.text
    assert sorted(got) == PHONES[:2]
    await all_delivered(rig, entry["seq"], 2)

    await rig.lab.smsc.send_mo(PHONES[0], SERVICE_NUMBER, "TD")
    _, receiver, text = await rig.lab.smsc.next_mt(TIMEOUT)
    assert receiver == PHONES[0] and "已退订" in text
    second = await post_entry(rig.client, rig.editor, incident["id"], body="第二条", sms=True)
    message = await rig.lab.smsc.next_mt_message(TIMEOUT)
    assert message.receiver == PHONES[1]
    await all_delivered(rig, second["seq"], 1)
    assert rig.lab.smsc.pending() == 0


@pytest.mark.slow
async def test_gateway_down_then_back_delivers_once_per_subscriber(rig: Rig) -> None:
    """With Kannel stopped the SMS waits in the outbox; after a restart each phone gets it once."""
    incident = await create_incident(rig.client, rig.editor, code="LSQ")
    for phone in PHONES:
        await subscribe(rig, phone, "LSQ")
    await rig.lab.stop()
    entry = await post_entry(rig.client, rig.editor, incident["id"], body=BODY, sms=True)

    async def refused() -> bool:
        rows = await rig.client.app[DB].read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery"
                " WHERE d.seq = ? AND a.outcome = 'retry'",
                (entry["seq"],),
            ).fetchone()
        )
        return rows[0] >= len(PHONES)

    await eventually(refused, "failed attempts while Kannel is down")
    await rig.lab.start()
    receivers = [(await rig.lab.smsc.next_mt_message(TIMEOUT)).receiver for _ in PHONES]
    assert sorted(receivers) == PHONES
    await all_delivered(rig, entry["seq"], len(PHONES))
    assert rig.lab.smsc.pending() == 0


async def test_smsc_offline_counts_as_queued_until_the_report(rig: Rig) -> None:
    """Kannel's "3: Queued" is handed over, not delivered: the report finishes it later."""
    incident = await create_incident(rig.client, rig.editor, code="QDX")
    await subscribe(rig, PHONES[0], "QDX")
    await rig.lab.stop_smsc()
    entry = await post_entry(rig.client, rig.editor, incident["id"], body="短信", sms=True)

    async def queued() -> bool:
        return await states(rig, entry["seq"]) == ["queued"]

    await eventually(queued, "the SMS queued by Kannel")
    await rig.lab.start_smsc()
    message = await rig.lab.smsc.next_mt_message(TIMEOUT)
    assert message.receiver == PHONES[0] and message.text.startswith("【崂山区应急管理局】")
    await all_delivered(rig, entry["seq"], 1)
