"""Read a JSON request body strictly, refusing what Python's ``json`` lets by.

``json.loads`` accepts ``NaN``, turns ``1e309`` into infinity, keeps the last
of duplicate keys, parses lone surrogates and recurses until it crashes.
Each of these is refused here with 400 and its own code, before any handler
sees the data. The body size limit is aiohttp's ``client_max_size``; its 413
is turned into the contract's JSON by the error middleware.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import BadRequest, UnsupportedMedia

MAX_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON", code="invalid_json")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequest(f"number {text[:20]} is out of range", code="number_out_of_range")
    return value


def _bounded_int(text: str) -> int:
    # Python refuses ints over 4300 digits with a ValueError that talks about
    # sys.set_int_max_str_digits; answer in the API's own words instead.
    if len(text) > 100:
        raise BadRequest(
            f"integer of {len(text)} digits is out of range", code="number_out_of_range"
        )
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(f"duplicate key {key!r}", code="duplicate_key", field=key)
        result[key] = value
    return result


def _depth_ok(text: str) -> bool:
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("text contains a lone surrogate", code="invalid_utf8") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def parse_json(raw: bytes) -> Any:
    """Parse ``raw`` as strict JSON text (UTF-8, no BOM)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise BadRequest("JSON text must not start with a byte order mark", code="invalid_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"body is not valid UTF-8 at byte {exc.start}", code="invalid_utf8"
        ) from None
    if not _depth_ok(text):
        raise BadRequest(f"JSON nests deeper than {MAX_DEPTH}", code="json_too_deep")
    try:
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
            position=exc.pos,
        ) from None
    except ValueError as exc:  # e.g. integers longer than Python's digit limit
        raise BadRequest(f"malformed JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("JSON nests too deep", code="json_too_deep") from None
    _check_strings(value)
    return value


async def read_object(request: web.Request) -> dict[str, Any]:
    """Return the request's JSON object body."""
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMedia("send the body as application/json", code="unsupported_media_type")
    raw = await request.read()
    if not raw:
        raise BadRequest("the body is empty; send a JSON object", code="invalid_json")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return value
