"""Test webhook registration and delivery against a real local endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient
from conftest import TIMEOUT, backend_options, create_incident, post_entry
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from webhook_receiver import Receiver

from broadcaster.settings import Settings

T = TypeVar("T")


def loopback_settings(tmp_path: Any, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Return settings with the loopback receiver allowed and a schedule of seconds, not hours.

    Also the ``settings`` fixture of tests/test_outbox.py; on either backend.
    """
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        public_url="http://example.test",
        webhook_allow=("127.0.0.1",),
        retry_schedule=(0, 0, 0),
        delivery_timeout=2,
        **backend_options(backend, request),
    )


settings = pytest.fixture(loopback_settings, name="settings")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local endpoint answering 200 unless the test scripts otherwise."""
    async with Receiver() as running:
        yield running


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, limit: float = TIMEOUT
) -> T:
    """Return the first truthy value of ``probe()``, polling for up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def register(
    client: TestClient, admin: dict[str, str], url: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post("/api/webhooks", json={"url": url, **fields}, headers=admin)
    assert response.status == 201, await response.text()
    return await response.json()


async def deliveries(client: TestClient, admin: dict[str, str], webhook_id: int) -> list[Any]:
    response = await client.get(f"/api/webhooks/{webhook_id}/deliveries", headers=admin)
    assert response.status == 200
    return (await response.json())["deliveries"]


async def settled(
    client: TestClient, admin: dict[str, str], webhook_id: int, count: int, state: str
) -> list[Any]:
    """Wait until ``count`` deliveries of the webhook are in ``state``; return them all."""

    async def probe() -> list[Any] | None:
        found = await deliveries(client, admin, webhook_id)
        return found if sum(d["state"] == state for d in found) == count else None

    return await eventually(probe, f"{count} deliveries {state}")


async def unsent(client: TestClient, admin: dict[str, str], webhook_id: int) -> list[Any]:
    """Wait until none of the webhook's deliveries is pending; return them all.

    Deliveries are queued with their entry, before its 201: once none is
    pending, nothing else is on its way to the endpoint, so a test can then
    assert what it did not receive.
    """

    async def probe() -> list[Any] | None:
        found = await deliveries(client, admin, webhook_id)
        return found if found and all(d["state"] != "pending" for d in found) else None

    return await eventually(probe, "no delivery pending")


async def test_registration_shows_the_secret_once(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    """The 201 carries a whsec_ secret; listing and reading the endpoint never do."""
    created = await register(client, admin, receiver.url)
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "active"
    assert created["incidents"] == "*" and created["events"] == ["entry.created"]
    listed = await (await client.get("/api/webhooks", headers=admin)).json()
    one = await (await client.get(f"/api/webhooks/{created['id']}", headers=admin)).json()
    assert "secret" not in listed["webhooks"][0] and "secret" not in one
    assert created["secret"] not in json.dumps(listed) + json.dumps(one)


async def test_delivery_is_signed_per_standard_webhooks(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """The body verifies with the standardwebhooks library and carries the entry as served."""
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url, incidents=[incident["id"]])
    entry = await post_entry(client, editor, incident["id"], body="水位上涨，请转移。")
    got = await receiver.next(TIMEOUT)
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "entry.created"
    assert payload["data"] == entry
    assert got.headers["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(got.body.replace("转移".encode(), b"x"), got.headers)


async def test_only_subscribed_incidents_are_sent(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """An endpoint scoped to one incident receives nothing from another."""
    watched = await create_incident(client, editor)
    other = await create_incident(client, editor, title="另一事件")
    hook = await register(client, admin, receiver.url, incidents=[watched["id"]])
    await post_entry(client, editor, other["id"])
    entry = await post_entry(client, editor, watched["id"])
    listed = await unsent(client, admin, hook["id"])
    assert [(d["incident"], d["seq"], d["state"]) for d in listed] == [
        (entry["incident"], entry["seq"], "delivered")
    ]
    got = [json.loads(r.body)["data"] for r in receiver.received]
    assert [(data["incident"], data["seq"]) for data in got] == [(entry["incident"], entry["seq"])]


async def test_failing_receiver_still_gets_the_entry(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """Two 500s are retried; every attempt is listed and all share one webhook-id."""
    receiver.answers = [500, 500]
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    got = [await receiver.next(TIMEOUT) for _ in range(3)]
    assert len({r.headers["webhook-id"] for r in got}) == 1
    [delivery] = await settled(client, admin, hook["id"], 1, "delivered")
    codes = [a["response_code"] for a in delivery["attempts"]]
    assert codes == [500, 500, 200]
    assert [a["outcome"] for a in delivery["attempts"]] == ["retry", "retry", "ok"]
    assert all(a["duration_ms"] is not None for a in delivery["attempts"])


async def test_dead_letter_after_the_last_attempt(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """With a schedule of three retries, the fourth failure leaves the delivery dead."""
    receiver.answers = [503] * 10
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    [delivery] = await settled(client, admin, hook["id"], 1, "dead")
    assert len(delivery["attempts"]) == 4
    assert delivery["last_error"].startswith("HTTP 503")


async def test_gone_disables_the_endpoint_and_resume_sends_what_was_held(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """A 410 disables the endpoint with a reason; resuming delivers the held entries."""
    receiver.answers = [410]
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    await receiver.next(TIMEOUT)

    async def disabled() -> dict[str, Any] | None:
        found = await (await client.get(f"/api/webhooks/{hook['id']}", headers=admin)).json()
        return found if found["status"] == "disabled" else None

    found = await eventually(disabled, "the endpoint disabled")
    assert "410" in found["disabled_reason"]
    await post_entry(client, editor, incident["id"], body="第二条")
    await settled(client, admin, hook["id"], 2, "held")
    response = await client.post(f"/api/webhooks/{hook['id']}/resume", headers=admin)
    assert (await response.json())["status"] == "active"
    await settled(client, admin, hook["id"], 2, "delivered")
    assert len(receiver.received) == 3


async def test_pause_holds_deliveries_until_resume(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """Nothing is sent to a paused endpoint, and nothing is lost."""
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    response = await client.post(f"/api/webhooks/{hook['id']}/pause", headers=admin)
    assert (await response.json())["status"] == "paused"
    await post_entry(client, editor, incident["id"])
    await settled(client, admin, hook["id"], 1, "held")
    assert receiver.received == []
    await client.post(f"/api/webhooks/{hook['id']}/resume", headers=admin)
    await receiver.next(TIMEOUT)
    await settled(client, admin, hook["id"], 1, "delivered")


async def test_endpoint_disabled_after_consecutive_dead_deliveries(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """Five deliveries in a row dead disables the endpoint, and the admin sees why."""
    receiver.answers = [500] * 100
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    for n in range(5):
        await post_entry(client, editor, incident["id"], body=f"第{n}条")

    async def disabled() -> dict[str, Any] | None:
        found = await (await client.get(f"/api/webhooks/{hook['id']}", headers=admin)).json()
        return found if found["status"] == "disabled" else None

    found = await eventually(disabled, "the endpoint disabled")
    assert "5 deliveries in a row" in found["disabled_reason"]


@pytest.mark.slow
async def test_retry_after_is_honoured(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by a second, not the schedule's 0."""
    receiver.answers = [(429, {"Retry-After": "1"})]
    incident = await create_incident(client, editor)
    await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    first = await receiver.next(TIMEOUT)
    second = await receiver.next(TIMEOUT)
    assert second.at - first.at >= 0.9


async def test_redirects_are_not_followed(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """A 302 counts as a failure and its Location is never requested."""
    receiver.answers = [(302, {"Location": receiver.url_for("/elsewhere")})] * 4
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    [delivery] = await settled(client, admin, hook["id"], 1, "dead")
    assert all(r.path == "/hook" for r in receiver.received)
    assert "redirects are not followed" in delivery["last_error"]


@pytest.mark.slow
async def test_a_hanging_endpoint_times_out_and_is_retried(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """An attempt that gets no answer within the timeout is recorded and tried again."""
    receiver.hold = asyncio.Event()
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    await receiver.next(TIMEOUT)
    second = await receiver.next(TIMEOUT)
    receiver.hold.set()
    [delivery] = await settled(client, admin, hook["id"], 1, "delivered")
    assert "no complete answer within 2 s" in delivery["attempts"][0]["error"]
    assert second.headers["webhook-id"] == delivery["message_id"]


async def test_deleting_an_endpoint_removes_its_deliveries(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """After DELETE the endpoint and its delivery log are gone (404)."""
    hook = await register(client, admin, receiver.url)
    response = await client.delete(f"/api/webhooks/{hook['id']}", headers=admin)
    assert response.status == 204
    response = await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin)
    assert response.status == 404
    assert (await response.json())["error"] == "webhook_not_found"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "missing_field"),
        ({"url": "https://93.184.215.14/h", "events": ["entry.deleted"]}, 422, "unknown_event"),
        ({"url": "https://93.184.215.14/h", "events": []}, 422, "unknown_event"),
        ({"url": "https://93.184.215.14/h", "incidents": ["nope"]}, 422, "unknown_incident"),
        ({"url": "https://93.184.215.14/h", "incidents": "all"}, 422, "invalid_value"),
        ({"url": "https://93.184.215.14/h", "secret": "x"}, 422, "unknown_field"),
        ({"url": "ftp://example.com/h"}, 422, "url_scheme"),
    ],
)
async def test_bad_registrations_are_refused(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], status: int, code: str
) -> None:
    """Each bad registration answers its own error code and creates nothing."""
    response = await client.post("/api/webhooks", json=body, headers=admin)
    assert response.status == status
    assert (await response.json())["error"] == code
    listed = await (await client.get("/api/webhooks", headers=admin)).json()
    assert listed["webhooks"] == []


async def test_only_admins_manage_webhooks(
    client: TestClient, editor: dict[str, str], receiver: Receiver
) -> None:
    """An editor gets 403 and an anonymous caller 401."""
    response = await client.post("/api/webhooks", json={"url": receiver.url}, headers=editor)
    assert response.status == 403
    response = await client.get("/api/webhooks")
    assert response.status == 401


async def test_attempts_are_counted_in_metrics(
    client: TestClient, admin: dict[str, str], editor: dict[str, str], receiver: Receiver
) -> None:
    """/metrics counts delivery attempts by channel and outcome."""
    receiver.answers = [500]
    incident = await create_incident(client, editor)
    hook = await register(client, admin, receiver.url)
    await post_entry(client, editor, incident["id"])
    await settled(client, admin, hook["id"], 1, "delivered")
    text = await (await client.get("/metrics", headers=admin)).text()
    assert 'broadcaster_deliveries_total{channel="webhook",outcome="retry"} 1.0' in text
    assert 'broadcaster_deliveries_total{channel="webhook",outcome="delivered"} 1.0' in text
