"""Serve the operational endpoints: health, readiness, metrics and the OpenAPI file."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..appkeys import BUS, METRICS, SETTINGS, STORE
from ..auth import require
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
    ready = all(checks.values())
    return json_response(
        {"status": "ready" if ready else "degraded", "checks": checks}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].metrics_public:
        await require(request, "admin")
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("broadcaster").joinpath("openapi.json").read_text("utf-8")
    return web.Response(
        text=text, content_type="application/json", headers={"Access-Control-Allow-Origin": "*"}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
