"""Download what ``verify`` needs from a running service.

Order matters while entries are being appended: the log's checkpoint is read
first, then the incident's signed head, then the timeline. Everything read
later is at least as new, so the timeline always contains what the
checkpoints cover, and nothing honest looks like a rollback.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .errors import BroadcasterError
from .log import tiles
from .log.checkpoint import parse_checkpoint
from .log.note import NoteError, parse_note
from .text import decode_bytes

PAGE = 1000


class CouldNotCheck(BroadcasterError):
    """The service could not be reached or answered something unusable."""


async def _get(session: aiohttp.ClientSession, url: str, allow_404: bool = False) -> Any:
    try:
        async with session.get(url) as response:
            if response.status == 404 and allow_404:
                return None
            if response.status != 200:
                raise CouldNotCheck(f"GET {url} answered {response.status}")
            return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CouldNotCheck(f"GET {url} failed: {exc}") from exc


async def _get_bytes(session: aiohttp.ClientSession, url: str) -> bytes:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                raise CouldNotCheck(f"GET {url} answered {response.status}")
            return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CouldNotCheck(f"GET {url} failed: {exc}") from exc


async def fetch_log(session: aiohttp.ClientSession, base: str) -> tuple[str, list[bytes]]:
    """Return the log's checkpoint (as served, with cosignatures) and every leaf it covers."""
    text = decode_bytes(await _get_bytes(session, f"{base}/log/checkpoint"))
    try:
        size = parse_checkpoint(parse_note(text).text).size
    except NoteError as exc:
        raise CouldNotCheck(f"the log checkpoint is not a signed note: {exc}") from exc
    leaves: list[bytes] = []
    for index in range((size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
        width = min(tiles.TILE_WIDTH, size - index * tiles.TILE_WIDTH)
        tile = tiles.Tile(None, index, width)
        data = await _get_bytes(session, f"{base}/log/{tile.path}")
        try:
            leaves.extend(tiles.parse_entry_bundle(data))
        except ValueError as exc:
            raise CouldNotCheck(f"{tile.path} is not an entry bundle: {exc}") from exc
    return text, leaves[:size]


async def fetch_timeline(base_url: str, incident_id: str) -> dict[str, Any]:
    """Return ``{"log", "leaves", "keys", "incident", "checkpoint", "entries"}`` from ``base_url``.

    ``incident`` is None when the site answers 404 for it (a deleted incident
    is then told apart from an unknown one by the log).
    """
    base = base_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        log_text, leaves = await fetch_log(session, base)
        keys = await _get(session, f"{base}/.well-known/broadcaster-keys.json")
        incident = await _get(session, f"{base}/api/incidents/{incident_id}", allow_404=True)
        checkpoint = None
        entries: list[dict[str, Any]] = []
        if incident is not None:
            checkpoint = await _get(
                session, f"{base}/api/incidents/{incident_id}/checkpoint", allow_404=True
            )
            while True:
                page = await _get(
                    session,
                    f"{base}/api/incidents/{incident_id}/entries?after={len(entries)}&limit={PAGE}",
                )
                batch = page.get("entries") if isinstance(page, dict) else None
                if not isinstance(batch, list):
                    raise CouldNotCheck("the entries answer has no 'entries' list")
                entries.extend(batch)
                # A page may be cut short by size: "more" says whether the head is further.
                if not batch or not page.get("more", len(batch) == PAGE):
                    break
    return {
        "log": log_text,
        "leaves": leaves,
        "keys": keys,
        "incident": incident,
        "checkpoint": checkpoint,
        "entries": entries,
    }
