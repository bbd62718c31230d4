"""Check the members of a JSON object against a small declared spec.

Every refusal is a 422 naming the field: ``missing_field``, ``unknown_field``,
``invalid_type``, ``invalid_value``, ``too_long``, ``forbidden_char``. Text is
NFC-normalised. Every text field refuses control characters (multi-line ones
allow newline and tab), bidi controls (U+202A-U+202E, U+2066-U+2069: they
reorder what readers see) and noncharacters (U+FDD0-U+FDEF and the last two
code points of every plane: not for interchange, illegal in feeds' XML 1.0
where U+FFFE/U+FFFF are concerned). One-line fields also refuse every
invisible format character (Unicode category Cf: zero-width spaces and
joiners, the BOM, soft hyphen, tag characters and the like), which enable
spoofing and header or log injection.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clock import format_ts, parse_ts
from ..errors import Unprocessable

_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_NONCHAR = re.compile("[\ufdd0-\ufdef\ufffe\uffff]|[\U0001fffe-\U0010ffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Field:
    """One member of a request object."""

    name: str
    kind: str  # "line", "text", "int", "bool", "time", "object", "list", "any"
    required: bool = False
    nullable: bool = True
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None
    low: int | None = None
    high: int | None = None
    check: Callable[[Any], Any] | None = None


def _bad(field: str, message: str, code: str = "invalid_value") -> Unprocessable:
    return Unprocessable(message, code=code, field=field)


def _noncharacter(value: str) -> bool:
    found = _NONCHAR.search(value)
    while found is not None:  # the supplementary range above is wide: check the exact points
        if found.group() < "\U00010000" or (ord(found.group()) & 0xFFFE) == 0xFFFE:
            return True
        found = _NONCHAR.search(value, found.end())
    return False


def clean_text(name: str, value: str, *, multiline: bool, max_len: int | None) -> str:
    value = unicodedata.normalize("NFC", value)
    if multiline:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        if _CONTROL_MULTILINE.search(value):
            raise _bad(name, f"'{name}' contains control characters", "forbidden_char")
    elif _CONTROL.search(value):
        raise _bad(name, f"'{name}' contains control characters", "forbidden_char")
    if _BIDI.search(value):
        raise _bad(name, f"'{name}' contains bidi control characters", "forbidden_char")
    if _noncharacter(value):
        raise _bad(name, f"'{name}' contains Unicode noncharacters", "forbidden_char")
    if not multiline:
        if any(unicodedata.category(c) == "Cf" for c in value):
            raise _bad(name, f"'{name}' contains invisible formatting characters", "forbidden_char")
        value = value.strip()
    if max_len is not None and len(value) > max_len:
        raise _bad(name, f"'{name}' is longer than {max_len} characters", "too_long")
    return value


def _coerce(spec: Field, value: Any) -> Any:
    name = spec.name
    if spec.kind in ("line", "text", "time"):
        if not isinstance(value, str):
            raise _bad(name, f"'{name}' must be a string", "invalid_type")
        if spec.kind == "time":
            try:
                return format_ts(parse_ts(value))
            except ValueError:
                raise _bad(name, f"'{name}' must be an RFC 3339 timestamp with an offset") from None
        value = clean_text(name, value, multiline=spec.kind == "text", max_len=spec.max_len)
    elif spec.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(name, f"'{name}' must be an integer", "invalid_type")
        if spec.low is not None and value < spec.low:
            raise _bad(name, f"'{name}' must be at least {spec.low}")
        if spec.high is not None and value > spec.high:
            raise _bad(name, f"'{name}' must be at most {spec.high}")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise _bad(name, f"'{name}' must be true or false", "invalid_type")
    elif spec.kind == "object":
        if not isinstance(value, dict):
            raise _bad(name, f"'{name}' must be an object", "invalid_type")
    elif spec.kind == "list" and not isinstance(value, list):
        raise _bad(name, f"'{name}' must be a list", "invalid_type")
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        raise _bad(name, f"'{name}' must be one of: {allowed}")
    if spec.check is not None:
        value = spec.check(value)
    return value


def check_object(data: dict[str, Any], specs: tuple[Field, ...]) -> dict[str, Any]:
    """Return ``data`` with each member checked and normalised; absent ones are left out."""
    known = {spec.name: spec for spec in specs}
    for key in data:
        if key not in known:
            raise Unprocessable(f"unknown field '{key}'", code="unknown_field", field=key)
    result: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in data:
            if spec.required:
                raise Unprocessable(
                    f"'{spec.name}' is required", code="missing_field", field=spec.name
                )
            continue
        value = data[spec.name]
        if value is None:
            if spec.required or not spec.nullable:
                raise _bad(spec.name, f"'{spec.name}' must not be null", "invalid_type")
            result[spec.name] = None
            continue
        result[spec.name] = _coerce(spec, value)
    return result
