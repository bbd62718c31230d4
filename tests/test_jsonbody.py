"""Strict JSON parsing: what Python's ``json`` lets by is refused, each with its own code."""

from __future__ import annotations

import pytest

from broadcaster.errors import BadRequest
from broadcaster.web.jsonbody import MAX_DEPTH, parse_json

MALFORMED = [
    ("trailing comma", b'{"body": "x",}', "invalid_json"),
    ("byte order mark", b'\xef\xbb\xbf{"body": "x"}', "invalid_json"),
    ("NaN", b'{"n": NaN}', "invalid_json"),
    ("Infinity", b'{"n": -Infinity}', "invalid_json"),
    ("1e309", b'{"n": 1e309}', "number_out_of_range"),
    ("duplicate key", b'{"body": "x", "body": "y"}', "duplicate_key"),
    ("5000-digit integer", b'{"n": ' + b"7" * 5000 + b"}", "number_out_of_range"),
    ("100k-deep nesting", b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
    ("invalid UTF-8", b'{"body": "\xff"}', "invalid_utf8"),
    ("overlong UTF-8", b'{"body": "\xc0\xaf"}', "invalid_utf8"),
    ("lone surrogate", b'{"body": "\\ud800"}', "invalid_utf8"),
    ("lone surrogate in a key", b'{"\\udfff": 1}', "invalid_utf8"),
    ("truncated", b'{"body": "x"', "invalid_json"),
]


@pytest.mark.parametrize(("name", "raw", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_json_is_refused_with_its_code(name: str, raw: bytes, code: str) -> None:
    """Each kind of malformed JSON raises a 400 with its own machine code."""
    with pytest.raises(BadRequest) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    assert caught.value.code == code


def test_a_duplicate_key_is_named() -> None:
    """The duplicate key is named in the error so the sender can find it."""
    with pytest.raises(BadRequest) as caught:
        parse_json(b'{"a": {"figures": 1, "figures": 2}}')
    assert caught.value.extra["field"] == "figures"


def test_syntax_error_gives_the_position() -> None:
    """A syntax error says where it is."""
    with pytest.raises(BadRequest) as caught:
        parse_json(b'{"body": "x",}')
    assert caught.value.extra["position"] == 13


def test_nesting_up_to_the_limit_is_accepted() -> None:
    """Nesting exactly at the depth limit parses; one more level is refused."""
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(BadRequest):
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Brackets and escaped quotes inside strings are text, not depth."""
    text = '{"body": "' + "[{" * 1000 + '\\"[[["}'
    assert parse_json(text.encode())["body"].startswith("[{[{")


def test_ordinary_json_keeps_its_values() -> None:
    """Valid JSON comes back as the same values, Chinese and big-but-sane integers included."""
    raw = '{"body": "水位\\n上涨", "n": 123456789012, "ok": true, "x": null, "f": 1.5}'.encode()
    assert parse_json(raw) == {
        "body": "水位\n上涨",
        "n": 123456789012,
        "ok": True,
        "x": None,
        "f": 1.5,
    }
