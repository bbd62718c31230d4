"""Keep the site's table of areas: codes, names, aliases and who lies in whom.

Codes are GB/T 2260 administrative division codes (``370212`` 崂山区) or finer
codes the site defines for its streets and towns (``370212002`` 沙子口街道):
letters and digits, at most 16. The table is loaded at start from the CSV
file ``BROADCASTER_AREAS_FILE`` names (``code,name,aliases,parent``; aliases
separated by ``|``; a file row overwrites the area it names, areas only in
the table stay) and managed by admins with ``PUT /api/areas/{code}``;
``GET /api/areas`` lists it (public).

Areas nest. An area's parent is the one it names, else the one its digits
imply (``370212002`` lies in ``370212``, which lies in ``370200``, in
``370000``), skipping implied codes the table lacks. An incident "reaches"
its own areas, the areas inside them and the areas they lie in: a flood
tagged ``370212002`` concerns whoever follows 崂山区 or 青岛市, and a
city-wide typhoon tagged ``370200`` concerns whoever follows 沙子口街道.
Standing alerts (SMS, webhooks), area feeds and area pages all use that rule.

Names, aliases and codes are matched as residents type them: NFKC (full-width
``３７０２１２`` is ``370212``), upper case, without spaces.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from .api.common import json_response, remote_of
from .appkeys import DB, SETTINGS
from .auth.tokens import require
from .errors import ConfigError, NotFound, Unprocessable
from .store import areas as store
from .store import pages as pages_store
from .store.timeline import audit_row
from .web.fields import Field, check_object, clean_text
from .web.jsonbody import read_object

CODE = re.compile(r"^[0-9A-Za-z]{1,16}$")
MAX_ALIASES = 20
MAX_NAME = 60
#: Severity ranks; a standing alert names the lowest rank it wants.
RANKS = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}
DEFAULT_RANK = RANKS["severe"]


def key_of(text: str) -> str:
    """Return the form names, aliases and codes are matched in (NFKC, upper case, no spaces)."""
    return "".join(unicodedata.normalize("NFKC", text).upper().split())


def check_code(code: str, field: str = "code") -> str:
    """Return ``code`` upper-cased if it is a well-formed area code, else refuse it (422)."""
    if not CODE.match(code):
        raise Unprocessable(
            f"'{field}' must be an area code: letters and digits, at most 16",
            code="invalid_value",
            field=field,
        )
    return code.upper()


def implied_parent(code: str) -> str | None:
    """Return the parent a code's digits imply (GB/T 2260 and the 9/12-digit codes under it)."""
    if not code.isdigit():
        return None
    if len(code) == 6:
        if code[4:] != "00":
            return code[:4] + "00"
        if code[2:4] != "00":
            return code[:2] + "0000"
        return None
    if len(code) in (9, 12):
        return code[: len(code) - 3]
    return None


def closure(parents: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """Return every ``(area, ancestor)`` pair of the table, each area its own ancestor."""
    pairs = []
    for code in parents:
        seen = {code}
        pairs.append((code, code))
        step = parents[code] or implied_parent(code)
        while step is not None and step not in seen:
            seen.add(step)
            if step in parents:
                pairs.append((code, step))
                step = parents[step] or implied_parent(step)
            else:
                step = implied_parent(step)
    return pairs


def matching_areas(conn: Any, query: str, limit: int = 5) -> list[dict[str, str]]:
    """Return areas (``code``, ``name``) whose name, alias or code a search query names."""
    key = key_of(query)
    if not key:
        return []
    return [{"code": row["code"], "name": row["name"]} for row in store.keys_like(conn, key, limit)]


def area_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "code": row["code"],
        "name": row["name"],
        "aliases": json.loads(row["aliases"]),
        "parent": row["parent"],
    }


Row = tuple[str, str, list[str], str | None]


def put_areas(conn: Any, rows: list[Row]) -> int:
    """Create or replace areas inside the caller's transaction; return how many changed.

    The nesting is rebuilt once, after all of them, and only if something changed.
    """
    changed = 0
    for code, name, aliases, parent in rows:
        keys = {key_of(code), key_of(name), *(key_of(alias) for alias in aliases)}
        changed += store.upsert(conn, code, name, aliases, parent, keys)
    if changed:
        store.replace_paths(conn, closure(store.parents(conn)))
    return changed


def _aliases(value: list[Any]) -> list[str]:
    if len(value) > MAX_ALIASES or not all(isinstance(item, str) for item in value):
        raise Unprocessable(
            f"'aliases' must be a list of at most {MAX_ALIASES} names",
            code="invalid_value",
            field="aliases",
        )
    cleaned = []
    for item in value:
        alias = clean_text("aliases", item, multiline=False, max_len=MAX_NAME)
        if not key_of(alias):
            raise Unprocessable("an alias is empty", code="invalid_value", field="aliases")
        if alias not in cleaned:
            cleaned.append(alias)
    return cleaned


AREA_FIELDS = (
    Field("name", "line", required=True, nullable=False, max_len=MAX_NAME),
    Field("aliases", "list", nullable=False, check=_aliases),
    Field("parent", "line", max_len=16, check=lambda v: check_code(v, "parent")),
)


async def put_area_handler(request: web.Request) -> web.Response:
    """Create or replace one area (admin); ``201`` when it is new."""
    actor = await require(request, "admin")
    code = check_code(request.match_info["code"])
    fields = check_object(await read_object(request), AREA_FIELDS)
    name = fields["name"]
    if not key_of(name):
        raise Unprocessable("'name' must not be empty", code="invalid_value", field="name")
    aliases = fields.get("aliases") or []
    parent = fields.get("parent")
    if parent == code:
        raise Unprocessable("an area cannot lie in itself", code="invalid_value", field="parent")
    remote = remote_of(request)

    def job(conn: Any) -> tuple[bool, dict[str, Any]]:
        existed = store.get(conn, code) is not None
        if parent is not None and store.get(conn, parent) is None:
            raise Unprocessable(f"no area {parent!r}", code="unknown_area", field="parent")
        put_areas(conn, [(code, name, aliases, parent)])
        audit_row(conn, actor, "area.put", f"area:{code}", {"name": name}, remote)
        return existed, area_dict(store.get(conn, code))

    existed, area = await request.app[DB].write(job)
    return json_response(area, status=200 if existed else 201)


async def list_areas(request: web.Request) -> web.Response:
    rows = await request.app[DB].read(store.all_areas)
    return json_response({"areas": [area_dict(row) for row in rows]})


async def get_area(request: web.Request) -> web.Response:
    """Return one area with the incidents that reach it, active first, newest first."""
    code = request.match_info["code"].upper()

    def job(conn: Any) -> dict[str, Any] | None:
        row = store.get(conn, code)
        if row is None:
            return None
        found = pages_store.incidents_by_id(conn, store.incidents_in(conn, code)).values()
        incidents = sorted(found, key=lambda i: i["last_update_at"] or i["created_at"])[::-1]
        incidents.sort(key=lambda i: i["status"] != "active")
        return {**area_dict(row), "incidents": incidents}

    area = await request.app[DB].read(job)
    if area is None:
        raise NotFound(f"no area {code!r}", code="area_not_found")
    return json_response(area)


def read_csv(path: Path) -> list[Row]:
    """Read an areas file; a bad row raises ``ConfigError`` naming the file and line."""
    where = f"BROADCASTER_AREAS_FILE ({path})"
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{where}: cannot read it: {exc}") from None
    found = []
    for line, row in enumerate(rows, start=2):
        try:
            code = check_code((row.get("code") or "").strip())
            name = clean_text("name", row.get("name") or "", multiline=False, max_len=MAX_NAME)
            if not key_of(name):
                raise Unprocessable("'name' is empty", field="name")
            raw_aliases = (row.get("aliases") or "").split("|")
            aliases = _aliases([alias.strip() for alias in raw_aliases if alias.strip()])
            parent = (row.get("parent") or "").strip() or None
            if parent is not None:
                check_code(parent, "parent")
        except Unprocessable as exc:
            raise ConfigError(f"{where}, line {line}: {exc}") from None
        found.append((code, name, aliases, parent))
    return found


async def _load_file(app: web.Application) -> AsyncIterator[None]:
    path = app[SETTINGS].areas_file
    if path is not None:
        rows = read_csv(path)

        await app[DB].write(lambda conn: put_areas(conn, rows))
    yield


def setup(app: web.Application) -> None:
    """Add the areas API and, when configured, load the areas file at start."""
    app.cleanup_ctx.append(_load_file)
    app.router.add_get("/api/areas", list_areas)
    app.router.add_get("/api/areas/{code}", get_area)
    app.router.add_put("/api/areas/{code}", put_area_handler)
