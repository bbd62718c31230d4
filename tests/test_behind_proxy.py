"""Behind ``deploy/nginx.conf``: every per-client rule sees the real client, not the proxy.

One node (on either store) runs with ``BROADCASTER_TRUSTED_PROXIES=127.0.0.1``
behind nginx configured from the shipped example. Clients connect to nginx
from other loopback addresses (127.0.0.2, 127.0.0.3, ...), so nginx sees
distinct clients and the node sees only nginx, exactly as in a deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TIMEOUT, bearer, make_token
from test_deploy_proxy import running_proxy

from broadcaster.app import create_app
from broadcaster.auth import tokens as auth
from broadcaster.settings import Settings

NEW_INCIDENT = {"title": "山洪", "severity": "severe"}
ATTACKER, STAFF, RESIDENT = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[TestClient]:
    """One node that trusts nginx (127.0.0.1) to name clients; small live cap to test."""
    trusting = settings.with_(trusted_proxies=("127.0.0.1/32",), max_live_per_client=3)
    async with TestClient(TestServer(create_app(trusting), host="127.0.0.1", port=0)) as client:
        yield client


@pytest.fixture
def proxy(tmp_path: Path, node: TestClient) -> Iterator[str]:
    """nginx with the shipped configuration in front of the node; yields its base URL."""
    with running_proxy(tmp_path, [node.port]) as base:  # type: ignore[list-item]
        yield base


def session_from(address: str) -> aiohttp.ClientSession:
    """Return a client session whose connections leave from ``address``."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT))


async def until_up(base: str) -> None:
    async with session_from(STAFF) as session:
        for _ in range(int(TIMEOUT / 0.05)):  # nginx has no readiness signal but its port
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail("nginx did not come up")


async def post(session: aiohttp.ClientSession, url: str, body: Any, **kw: Any) -> tuple[int, Any]:
    async with session.post(url, json=body, **kw) as response:
        return response.status, await response.json()


async def test_made_up_tokens_through_the_proxy_lock_out_only_their_sender(
    proxy: str, node: TestClient
) -> None:
    """The attack: made-up tokens through nginx, with forged X-Forwarded-For. Only the
    sender is locked out; staff elsewhere, and a valid token from the sender's own address,
    still get in."""
    await until_up(proxy)
    staff = bearer(await make_token(node, "editor"))
    wrong = {"Authorization": "Bearer bct_made-up"}
    url = proxy + "/api/incidents"
    async with session_from(ATTACKER) as attacker, session_from(STAFF) as office:
        statuses = []
        for n in range(auth.FAILED_LIMIT + 5):
            forged = {**wrong, "X-Forwarded-For": f"198.51.100.{n}"}  # a fresh "address" each
            statuses.append((await post(attacker, url, NEW_INCIDENT, headers=forged))[0])
        assert statuses[: auth.SLOW_LIMIT] == [401] * auth.SLOW_LIMIT
        assert set(statuses[auth.SLOW_LIMIT :]) == {429}, "forged headers do not escape"
        assert (await post(office, url, NEW_INCIDENT, headers=staff))[0] == 201
        assert (await post(attacker, url, NEW_INCIDENT, headers=staff))[0] == 201
        assert (await post(office, url, NEW_INCIDENT, headers=wrong))[0] == 401


async def test_the_audit_log_records_the_client_behind_the_proxy(
    proxy: str, node: TestClient
) -> None:
    """A write through nginx is audited with the client's address, not nginx's."""
    await until_up(proxy)
    admin = bearer(await make_token(node, "admin"))
    async with session_from(STAFF) as office, session_from(RESIDENT) as resident:
        _, incident = await post(office, proxy + "/api/incidents", NEW_INCIDENT, headers=admin)
        questions = f"{proxy}/api/incidents/{incident['id']}/questions"
        _, asked = await post(resident, questions, {"text": "沙子口的路通了吗？"})
        url = f"{questions}/{asked['id']}/dismiss"
        assert (await post(office, url, {"reason": "重复"}, headers=admin))[0] == 200
        audit = proxy + "/api/audit?action=question.dismiss"
        async with office.get(audit, headers=admin) as response:
            records = (await response.json())["audit"]
    assert [r["remote"] for r in records] == [STAFF]


async def test_question_limits_are_per_client_behind_the_proxy(
    proxy: str, node: TestClient
) -> None:
    """One client using up its question bucket through nginx leaves another client's intact."""
    await until_up(proxy)
    editor = bearer(await make_token(node, "editor"))
    async with session_from(STAFF) as office:
        _, incident = await post(office, proxy + "/api/incidents", NEW_INCIDENT, headers=editor)
    url = f"{proxy}/api/incidents/{incident['id']}/questions"
    async with session_from(ATTACKER) as attacker, session_from(RESIDENT) as resident:
        codes = [
            (await post(attacker, url, {"text": f"第{n}个问题：水什么时候退？"}))[0]
            for n in range(8)
        ]
        assert codes[-1] == 429
        status, body = await post(resident, url, {"text": "沙子口的路通了吗？"})
        assert status == 202, body


async def test_live_connection_caps_count_clients_behind_the_proxy(
    proxy: str, node: TestClient
) -> None:
    """Through nginx (WebSocket and SSE), one client is capped; another client still connects."""
    await until_up(proxy)
    editor = bearer(await make_token(node, "editor"))
    async with session_from(STAFF) as office:
        _, incident = await post(office, proxy + "/api/incidents", NEW_INCIDENT, headers=editor)
    iid = incident["id"]
    ws_url = proxy.replace("http", "ws") + f"/ws/incidents/{iid}"
    sse_url = f"{proxy}/api/incidents/{iid}/events"
    async with session_from(ATTACKER) as attacker, session_from(RESIDENT) as resident:
        held = [await attacker.ws_connect(ws_url) for _ in range(2)]
        stream = await attacker.get(sse_url)
        assert stream.status == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await attacker.ws_connect(ws_url)
        assert refused.value.status == 429
        async with attacker.get(sse_url) as over:
            assert over.status == 429
            assert (await over.json())["error"] == "too_many_live_connections"
        other = await resident.ws_connect(ws_url)
        assert (await other.receive_json(timeout=TIMEOUT))["type"] == "hello"
        for ws in (*held, other):
            await ws.close()
        stream.close()
