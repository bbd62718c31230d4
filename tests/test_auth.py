"""Bearer tokens: 401 without a good one, 403 for the wrong role, only hashes stored."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from conftest import bearer, create_incident, make_token
from raw_store import raw_store

from broadcaster.auth.tokens import TOKENS, hash_token
from broadcaster.settings import Settings


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "token_required"),
        ({"Authorization": "Bearer bct_not-a-real-token"}, "invalid_token"),
        ({"Authorization": "Bearer "}, "bad_authorization"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "bad_authorization"),
        ({"Authorization": "bct_no-scheme"}, "bad_authorization"),
    ],
)
async def test_without_a_valid_token_writes_answer_401(
    client: TestClient, headers: dict[str, str], code: str
) -> None:
    """A write without a valid bearer token answers 401 with its own code and creates nothing."""
    response = await client.post(
        "/api/incidents", json={"title": "洪水", "severity": "severe"}, headers=headers
    )
    assert (response.status, (await response.json())["error"]) == (401, code)
    assert (await (await client.get("/api/incidents")).json())["incidents"] == []


async def test_a_revoked_token_answers_401(client: TestClient) -> None:
    """A revoked token is refused like an unknown one."""
    token_id, token = await client.app[TOKENS].create("离职编辑", "应急管理局", "editor")
    assert await client.app[TOKENS].revoke(token_id)
    response = await client.post(
        "/api/incidents", json={"title": "洪水", "severity": "severe"}, headers=bearer(token)
    )
    assert (response.status, (await response.json())["error"]) == (401, "invalid_token")


@pytest.mark.parametrize("role", ["editor", "reviewer"])
async def test_the_wrong_role_answers_403(client: TestClient, role: str) -> None:
    """A valid token without the admin role is refused admin-only metrics with 403."""
    response = await client.get("/metrics", headers=bearer(await make_token(client, role)))
    assert (response.status, (await response.json())["error"]) == (403, "role_required")


async def test_higher_roles_include_lower_ones(
    client: TestClient, admin: dict[str, str], reviewer: dict[str, str]
) -> None:
    """Admins and reviewers can do what editors do; admins can read metrics."""
    await create_incident(client, admin)
    await create_incident(client, reviewer)
    assert (await client.get("/metrics", headers=admin)).status == 200


async def test_reading_is_public(client: TestClient, editor: dict[str, str]) -> None:
    """Incidents, entries, checkpoints and keys are readable without a token."""
    found = await create_incident(client, editor)
    for path in (
        "/api/incidents",
        f"/api/incidents/{found['id']}",
        f"/api/incidents/{found['id']}/entries",
        "/.well-known/broadcaster-keys.json",
    ):
        assert (await client.get(path)).status == 200, path


async def test_only_the_token_hash_is_stored(client: TestClient, settings: Settings) -> None:
    """The database holds the token's SHA-256, never the token itself."""
    token = await make_token(client, "editor")
    with raw_store(settings) as conn:
        rows = conn.rows("SELECT token_hash FROM tokens")
        dump = conn.dump()
    assert rows == [(hash_token(token),)]
    assert token not in dump


async def test_every_write_records_who_did_it(
    client: TestClient, editor: dict[str, str], settings: Settings
) -> None:
    """Creating an incident writes an audit row naming the token's name and department."""
    found = await create_incident(client, editor)
    with raw_store(settings) as conn:
        rows = conn.rows("SELECT actor, department, role, action, target FROM audit")
    assert ("值班编辑", "应急管理局", "editor", "incident.create", found["id"]) in rows
