"""Serve ``/api/incidents``: create, list and read incidents."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

from ..appkeys import DB, SETTINGS, STORE
from ..areas import check_code
from ..auth.tokens import require
from ..errors import Unprocessable
from ..privacy.review import review_text
from ..store import log as log_store
from ..timeline.drafts import hold_incident
from ..timeline.model import SEVERITIES
from ..web.fields import Field, check_object
from ..web.jsonbody import read_object
from .common import incident_or_404, json_response, remote_of

#: One short sentence: "现在应做：关闭门窗，留在室内。"
ADVICE_MAX = 200
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
CODE = re.compile(r"^[A-Z0-9]{1,8}$")


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise Unprocessable(
            "'id' must be lowercase letters, digits and dashes (at most 64)",
            field="id",
            code="invalid_value",
        )
    return value


def _code(value: str) -> str:
    value = value.upper()
    if not CODE.match(value):
        raise Unprocessable(
            "'code' must be at most 8 letters and digits", field="code", code="invalid_value"
        )
    return value


MAX_AREAS = 50


def _areas(value: list[Any]) -> list[str]:
    if len(value) > MAX_AREAS or not all(isinstance(item, str) for item in value):
        raise Unprocessable(
            f"'areas' must be a list of at most {MAX_AREAS} area codes",
            field="areas",
            code="invalid_value",
        )
    codes = [check_code(item, "areas") for item in value]
    return list(dict.fromkeys(codes))


INCIDENT_FIELDS = (
    Field("title", "line", required=True, max_len=120),
    Field("summary", "text", max_len=20_000),
    Field("advice", "line", max_len=ADVICE_MAX),
    Field("severity", "line", required=True, nullable=False, choices=SEVERITIES),
    Field("area", "line", max_len=200),
    Field("areas", "list", nullable=False, check=_areas),
    Field("started_at", "time"),
    Field("update_interval_minutes", "int", low=1, high=7 * 24 * 60),
    Field("id", "line", max_len=64, check=_slug),
    Field("code", "line", max_len=8, check=_code),
    Field("require_approval", "bool", nullable=False),
    Field("mask", "bool", nullable=False),
)
#: Incident text is public at once and cannot be redacted later: it passes the
#: same privacy review as entries (refused with findings, or masked on request).
REVIEWED_FIELDS = ("title", "summary", "advice", "area")


async def create_incident(request: web.Request) -> web.Response:
    """Create an incident, or hold it for a second person when two-person review is on."""
    actor = await require(request, "editor")
    fields = check_object(await read_object(request), INCIDENT_FIELDS)
    if not fields["title"]:
        raise Unprocessable("'title' must not be empty", code="invalid_value", field="title")
    mask = fields.pop("mask", False)
    for name in REVIEWED_FIELDS:
        if fields.get(name):
            fields[name] = review_text(fields[name], field=name, mask=mask)
    if request.app[SETTINGS].require_approval:
        held = await hold_incident(request.app, fields, actor, remote=remote_of(request))
        return json_response(held, status=202, headers={"Location": held["url"]})
    incident = await request.app[STORE].create_incident(fields, actor, remote_of(request))
    return json_response(incident, status=201)


async def list_incidents(request: web.Request) -> web.Response:
    """List incidents; an ETag lets pollers (the index page) pay a 304 when nothing changed."""
    body = json.dumps({"incidents": await request.app[STORE].incidents()}, ensure_ascii=False)
    etag = '"' + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(text=body, content_type="application/json", headers=headers)


async def get_incident(request: web.Request) -> web.Response:
    """Return the incident with its creation record, which the log's seq-0 leaf commits to."""
    incident: dict[str, Any] = await incident_or_404(request)
    incident["creation"] = await request.app[DB].read(
        lambda c: log_store.creation(c, incident["id"])
    )
    return json_response(incident)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/incidents", create_incident)
    app.router.add_get("/api/incidents", list_incidents)
    app.router.add_get("/api/incidents/{incident}", get_incident)
