"""Fuzz every documented endpoint with schemathesis: no 5xx, documented shapes, JSON errors.

The whole app runs on a real loopback port in a thread with its own event
loop (schemathesis calls it synchronously through ``requests``). Write
endpoints are called with an admin token; a seeded incident with a few
entries makes the generated ``{incident}`` hit real data part of the time.
Example counts are bounded so the run stays well under a minute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import TIMEOUT
from faults.servers import ThreadedServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, Response
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from broadcaster.api.ops import merged_openapi
from broadcaster.auth.tokens import TOKENS
from broadcaster.settings import Settings

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """The whole app on a real port, with one incident holding three entries."""
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    # No delivery worker: a fuzzed webhook URL must never receive real requests.
    config = Settings.from_env({}, data_dir=data, public_url="http://x.test", worker=False)
    running = ThreadedServer(config, TIMEOUT).start()
    # schemathesis probes every authorised call again with a wrong token; the
    # per-address slow-down and lockout (tested in test_security) would answer
    # those 429 instead of the documented 401.
    running.app[TOKENS].failures.limit = 10**9  # type: ignore[index]
    running.app[TOKENS].slow.limit = 10**9  # type: ignore[index]
    incident = running.post("/api/incidents", {"title": "山洪", "severity": "severe"})
    for n in range(3):
        running.post(f"/api/incidents/{incident['id']}/entries", {"body": f"第{n}次通报"})
    running.incident = incident["id"]  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


DOCUMENT = merged_openapi()
OPERATIONS = [
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in ("get", "post", "put", "patch", "delete")
    # An event stream never ends; test_fuzz_parsers covers its parameters.
    and "text/event-stream" not in json.dumps(item[method].get("responses", {}))
]


@pytest.fixture(scope="module")
def api_schema(server: ThreadedServer) -> Any:
    """The merged OpenAPI document as served, aimed at the running server."""
    loaded = schemathesis.openapi.from_url(server.base + "/api/openapi.json")
    loaded.config.update(base_url=server.base)
    return loaded


def is_page(operation: Any) -> bool:
    """Tell whether the operation serves an HTML page (its errors are HTML pages too)."""
    for response in operation.definition.raw.get("responses", {}).values():
        if "text/html" in response.get("content", {}):
            return True
    return False


def error_is_json_with_code(ctx: Any, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx answer is JSON with an ``error`` code (pages: HTML if asked for HTML)."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])[0]
    wants_html = "text/html" in (case.headers or {}).get("Accept", "")
    if is_page(case.operation) and wants_html and response.status_code < 500:
        assert ctype.startswith("text/html"), f"page error {response.status_code} as {ctype}"
        return True
    assert ctype.startswith("application/json"), f"{response.status_code} as {ctype}"
    body = json.loads(response.content)
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str), body
    return True


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_api_conforms_to_its_openapi_document(
    api_schema: Any, server: ThreadedServer, method: str, path: str, mode: GenerationMode
) -> None:
    """Generated requests never get a 5xx, and every answer matches the documented schema."""
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {server.token}"}

    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def check(case: Case, real: bool) -> None:
        if real and case.path_parameters:
            # Half of the cases aim at the seeded incident, so that success paths run too.
            if "incident" in case.path_parameters:
                case.path_parameters["incident"] = server.incident  # type: ignore[attr-defined]
            if "seq" in case.path_parameters:
                case.path_parameters["seq"] = 2
        case.call_and_validate(
            headers=auth,
            additional_checks=[error_is_json_with_code],
            excluded_checks=[positive_data_acceptance, negative_data_rejection],
            timeout=TIMEOUT,
        )

    try:
        check()
    except Unsatisfiable:
        # Nothing of this operation can be made schema-invalid (no parameters or
        # only free-form ones): the positive run covers it.
        if mode is not GenerationMode.NEGATIVE:
            raise
