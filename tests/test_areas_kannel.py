"""Test standing alerts by area end to end through a real Kannel and a fake SMSC (the phones).

Phones subscribe to areas by texting the service number; an incident tagged with a street
reaches each of them once through Kannel, whether they follow the street, its district (by
name, alias or code) or the incident itself. Marked ``kannel``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import backend_options, bearer, create_incident, make_token, post_entry
from kannel_gateway import TIMEOUT, StartKannel
from test_areas import EXAMPLE
from test_sms_e2e import SERVICE_NUMBER, Rig, free_port
from test_webhooks import eventually

from broadcaster.app import create_app
from broadcaster.appkeys import DB
from broadcaster.settings import Settings

PHONES = ["+8613800000011", "+8613800000012", "+8613800000013"]


@pytest.fixture
def store_options(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The backend's settings, resolved outside the event loop (its fixtures start servers)."""
    return backend_options(backend, request)


@pytest.fixture
async def rig(
    tmp_path: Path, kannel: StartKannel, store_options: dict[str, Any]
) -> AsyncIterator[Rig]:
    """Start Kannel, then the app with the example areas sending through it."""
    port = free_port()
    async with kannel(tmp_path, mo_url=f"http://127.0.0.1:{port}/sms/inbound") as lab:
        sendsms = lab.sendsms_url.replace("http://", f"http://{lab.username}:{lab.password}@")
        settings = Settings.from_env(
            {"BROADCASTER_AREAS_FILE": str(EXAMPLE)},
            data_dir=tmp_path / "data",
            public_url=f"http://127.0.0.1:{port}",
            sms_gateway=f"kannel+{sendsms}?from={SERVICE_NUMBER}",
            sms_signature="崂山区应急管理局",
            retry_schedule=(1,) * 30,
            delivery_timeout=2,
            **store_options,
        )
        app = create_app(settings)
        async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
            editor = bearer(await make_token(client, "editor"))
            yield Rig(lab, client, editor)


async def text(rig: Rig, phone: str, message: str) -> str:
    """Text ``message`` from ``phone``; return the reply the phone receives."""
    await rig.lab.smsc.send_mo(phone, SERVICE_NUMBER, message)
    sender, receiver, reply = await rig.lab.smsc.next_mt(TIMEOUT)
    assert (sender, receiver) == (SERVICE_NUMBER, phone)
    return reply


async def test_an_area_alert_reaches_each_phone_once_through_kannel(rig: Rig) -> None:
    """The first SMS entry of a new incident reaches every phone following its areas, once."""
    assert "崂山区" in await text(rig, PHONES[0], "订阅 崂山区")
    assert "沙子口街道" in await text(rig, PHONES[1], "ＳＵＢ　３７０２１２００２")
    assert "全部级别" in await text(rig, PHONES[1], "订阅崂山 全部")
    await text(rig, PHONES[2], "订阅 370212")
    incident = await create_incident(
        rig.client, rig.editor, code="SZK", title="沙子口山洪", areas=["370212002"]
    )
    assert "SZK" in await text(rig, PHONES[2], "订阅 SZK")
    entry = await post_entry(
        rig.client, rig.editor, incident["id"], body="请沿河居民立即转移到高处。", sms=True
    )
    got = {}
    for _ in PHONES:
        message = await rig.lab.smsc.next_mt_message(TIMEOUT)
        assert message.receiver not in got
        got[message.receiver] = message
    assert sorted(got) == PHONES
    for phone in PHONES[:2]:
        assert "订阅SZK" in got[phone].text and got[phone].text.endswith("回TD退订")
        assert got[phone].coding == "ucs2" and "?" not in got[phone].text
    assert "订阅SZK" not in got[PHONES[2]].text  # it came through the incident subscription

    async def delivered() -> bool:
        rows = await rig.client.app[DB].read(
            lambda c: c.execute(
                "SELECT state FROM deliveries WHERE event LIKE 'entry.sms%' AND seq = ?",
                (entry["seq"],),
            ).fetchall()
        )
        return [row[0] for row in rows] == ["delivered"] * len(PHONES)

    await eventually(delivered, "three delivery reports")
    assert rig.lab.smsc.pending() == 0
