"""Download what ``verify`` needs from a running service."""

from __future__ import annotations

from typing import Any

import aiohttp

from .errors import BroadcasterError

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


async def fetch_timeline(base_url: str, incident_id: str) -> dict[str, Any]:
    """Return ``{"incident", "entries", "checkpoint", "keys"}`` read from ``base_url``."""
    base = base_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        incident = await _get(session, f"{base}/api/incidents/{incident_id}")
        keys = await _get(session, f"{base}/.well-known/broadcaster-keys.json")
        entries: list[dict[str, Any]] = []
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
        checkpoint = await _get(
            session, f"{base}/api/incidents/{incident_id}/checkpoint", allow_404=True
        )
    return {"incident": incident, "entries": entries, "checkpoint": checkpoint, "keys": keys}
