"""Serve the operational endpoints: health, readiness, metrics and the OpenAPI file."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..appkeys import BUS, METRICS, SETTINGS, STORE
from ..auth.tokens import require
from ..web.livecap import DESCRIPTORS
from .common import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = {}
    for name, part in (("store", request.app[STORE]), ("bus", request.app[BUS])):
        try:
            checks[name] = bool(await part.ping())
        except Exception:
            checks[name] = False
    if DESCRIPTORS in request.app:  # out of descriptors lately: send new clients elsewhere
        checks["descriptors"] = not request.app[DESCRIPTORS].exhausted()
    ready = all(checks.values())
    return json_response(
        {"status": "ready" if ready else "degraded", "checks": checks}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].metrics_public:
        await require(request, "admin")
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def merged_openapi() -> dict[str, Any]:
    """Merge ``broadcaster/openapi/*.json`` in name order: each module documents its paths.

    Objects merge two levels deep (``paths``, ``components.schemas``); lists
    such as ``tags`` are concatenated.
    """
    document: dict[str, Any] = {}
    folder = resources.files("broadcaster").joinpath("openapi")
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if not item.name.endswith(".json"):
            continue
        part = json.loads(item.read_text("utf-8"))
        for key, value in part.items():
            if isinstance(value, list) and isinstance(document.get(key), list):
                document[key] = document[key] + [v for v in value if v not in document[key]]
            elif isinstance(value, dict) and isinstance(document.get(key), dict):
                for sub, subvalue in value.items():
                    if isinstance(subvalue, dict) and isinstance(document[key].get(sub), dict):
                        document[key][sub].update(subvalue)
                    else:
                        document[key][sub] = subvalue
            else:
                document[key] = value
    return document


async def openapi(request: web.Request) -> web.Response:
    return web.Response(
        text=json.dumps(merged_openapi(), ensure_ascii=False),
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
