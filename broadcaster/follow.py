"""Run ``broadcaster follow BASE_URL INCIDENT_ID``: print an incident's entries as they arrive.

Each entry becomes one line: seq, local time, kind, department and the text
(tags stripped, control characters removed so an entry cannot drive the
terminal). The command keeps the last seq it printed and, when the
connection drops (server restart, 4008 for a slow client, network), reconnects
with ``after=`` that seq after an exponential backoff with full jitter, so a
crowd of followers does not return all at once. Ctrl-C stops it cleanly.

Exit codes: 0 stopped by the user, 2 could not follow (unknown incident, bad
URL, refused by the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import unicodedata
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from .backoff import Backoff
from .clock import parse_ts
from .text import html_to_text

MAX_FRAME = 4 * 1024 * 1024
FIRST_DELAY = 0.5
MAX_DELAY = 30.0


class CannotFollow(Exception):
    """The server refused, or the URL or incident is wrong: retrying will not help."""


def ws_url(base_url: str, incident_id: str, after: int) -> str:
    """Return the WebSocket URL of ``incident_id`` on ``base_url`` (http→ws, https→wss)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise CannotFollow(f"not an http(s) URL: {base_url!r}")
    path = f"{parts.path}/ws/incidents/{quote(incident_id, safe='')}"
    return urlunsplit((scheme, parts.netloc, path, f"after={after}", ""))


def plain_text(html: str) -> str:
    """Return ``html`` as one line of text without tags or control characters."""
    return printable(html_to_text(html))


def printable(text: str) -> str:
    """Return ``text`` on one line with no character a terminal could act on (escapes, bidi)."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return " ".join(text.split())


def format_entry(entry: dict[str, Any]) -> str:
    """Return one line for ``entry``: seq, local time, kind, department, text."""
    try:
        when = parse_ts(entry["posted_at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (KeyError, ValueError):
        when = "?"
    author = entry.get("author") or {}
    department = printable(str(author.get("department") or "-"))
    text = plain_text(str(entry.get("html") or ""))
    return f"#{entry.get('seq')}  {when}  {entry.get('kind')}  {department}  {text}"


async def follow(
    base_url: str,
    incident_id: str,
    *,
    after: int = 0,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    first_delay: float = FIRST_DELAY,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> None:
    """Print entries of ``incident_id`` forever, reconnecting as needed; raise ``CannotFollow``."""
    last = after
    backoff = Backoff(first_delay, MAX_DELAY, jitter=1.0)
    greeted = False
    while True:
        url = ws_url(base_url, incident_id, last)
        try:
            async with connect(url, compression=None, max_size=MAX_FRAME) as ws:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "hello":
                        backoff.succeeded()
                        if not greeted:
                            title = printable(str(frame["incident"].get("title", "")))
                            print(f"== {title} ({incident_id}), live", file=out, flush=True)
                            greeted = True
                    elif frame.get("type") == "entry":
                        entry = frame["entry"]
                        if entry["seq"] > last:
                            print(format_entry(entry), file=out, flush=True)
                            last = entry["seq"]
            reason = "the server closed the connection"
            if ws.close_code is not None:
                reason += f" (code {ws.close_code})"
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 404:
                raise CannotFollow(f"no incident {incident_id!r} at {base_url}") from None
            if 400 <= status < 500 and status != 429:
                raise CannotFollow(f"the server refused: HTTP {status}") from None
            reason = f"HTTP {status}"
        except InvalidURI as exc:
            raise CannotFollow(str(exc)) from None
        except (OSError, TimeoutError, WebSocketException, ValueError, KeyError, TypeError) as exc:
            reason = f"connection lost: {exc or type(exc).__name__}"
        delay = backoff.failed()
        print(f"-- {reason}; reconnecting in {delay:.1f} s", file=err, flush=True)
        await sleep(delay)


def cmd_follow(args: argparse.Namespace) -> int:
    try:
        asyncio.run(follow(args.base_url, args.incident, after=args.after))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 0
    except CannotFollow as exc:
        print(f"cannot follow: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("follow", help="follow an incident live in the terminal")
    parser.add_argument("base_url", help="e.g. https://news.example.gov.cn")
    parser.add_argument("incident")
    parser.add_argument("--after", type=int, default=0, help="start after this seq")
    parser.set_defaults(func=cmd_follow)
