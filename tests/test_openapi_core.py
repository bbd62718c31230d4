"""The core's OpenAPI fragment: every core route documented, valid 3.1, true to real answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from conftest import create_incident, post_entry
from openapi_spec_validator import validate

from broadcaster.api.ops import merged_openapi
from broadcaster.app import create_app
from broadcaster.settings import Settings

CORE_MODULES = {"broadcaster.api.incidents", "broadcaster.api.entries", "broadcaster.api.ops"}


def core_routes(settings: Settings) -> list[tuple[str, str]]:
    """Return (method, path) of every route the core modules register on the app."""
    app = create_app(settings)
    found = []
    for route in app.router.routes():
        if route.method == "HEAD" or getattr(route.handler, "__module__", "") not in CORE_MODULES:
            continue
        assert route.resource is not None
        found.append((route.method.lower(), route.resource.canonical))
    return found


def test_every_core_route_is_documented(settings: Settings) -> None:
    """Each route the core registers appears, with its method, in the merged document."""
    paths = merged_openapi()["paths"]
    routes = core_routes(settings)
    assert len(routes) >= 12
    missing = [(m, p) for m, p in routes if m not in paths.get(p, {})]
    assert missing == []


def test_the_merged_document_is_valid_openapi_3_1() -> None:
    """The merged document passes the OpenAPI 3.1 validator."""
    document = merged_openapi()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_writes_declare_bearer_and_every_error(settings: Settings) -> None:
    """Each core write names the bearer scheme and documents 400/401/403/413/415/422/503."""
    paths = merged_openapi()["paths"]
    for method, path in core_routes(settings):
        if method != "post":
            continue
        operation = paths[path][method]
        assert operation["security"] == [{"bearer": []}]
        assert {"400", "401", "403", "409", "413", "415", "422", "503"} <= set(
            operation["responses"]
        )


async def test_the_served_document_is_the_merged_one(client: TestClient) -> None:
    """``/api/openapi.json`` serves the merged fragments."""
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    assert await response.json() == merged_openapi()


def conforms(instance: Any, schema: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/<schema>`` of the merged document."""
    document = merged_openapi()
    wrapper = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    jsonschema.Draft202012Validator(wrapper).validate(instance)


async def test_real_answers_match_their_schemas(
    client: TestClient, editor: dict[str, str], tmp_path: Path
) -> None:
    """An incident, an entry, a list, a checkpoint, the keys and an error match the schemas."""
    incident = await create_incident(client, editor, update_interval_minutes=30)
    conforms(incident, "Incident")
    entry = await post_entry(client, editor, incident["id"], figures={"evacuated": 3400})
    conforms(entry, "Entry")
    base = f"/api/incidents/{incident['id']}"
    conforms(await (await client.get(base + "/entries")).json(), "EntryList")
    conforms(await (await client.get("/api/incidents")).json(), "IncidentList")
    conforms(await (await client.get(base + "/checkpoint")).json(), "Checkpoint")
    conforms(await (await client.get("/.well-known/broadcaster-keys.json")).json(), "Keys")
    conforms(await (await client.get("/readyz")).json(), "Readiness")
    conforms(await (await client.get("/api/incidents/nope")).json(), "Error")
    with pytest.raises(jsonschema.ValidationError):
        conforms({**entry, "seq": 0}, "Entry")
