"""Define the interface between the broadcaster and an SMS gateway (Kannel in production)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import aiohttp

__all__ = ["Outcome", "SendResult", "SmsGateway"]

Outcome = Literal["accepted", "queued", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """Report what the gateway said about one submission; delivery itself comes later by DLR.

    ``accepted``: the gateway took the message and handed it to an SMSC. ``queued``: the gateway
    took it but holds it (e.g. SMSC offline); do not resend, wait for the delivery report.
    ``retry``: the gateway did not take it (5xx, refused, timeout); sending again is safe but may
    duplicate if the request actually reached it. ``failed``: rejected, do not retry as is.
    ``detail`` is human-readable and never contains credentials; ``gateway_id`` is the gateway's
    own message id when it returns one (Kannel's sendsms does not).
    """

    outcome: Outcome
    detail: str
    gateway_id: str | None = None


@runtime_checkable
class SmsGateway(Protocol):
    """Send one SMS to one E.164 recipient; implementations must be safe to share between tasks."""

    async def send(self, *, to: str, text: str, message_id: str) -> SendResult:
        """Submit ``text`` to ``to``; ``message_id`` is ours and comes back in delivery reports."""
        ...

    async def close(self) -> None:
        """Release connections owned by the gateway."""
        ...


class HttpSession:
    """Hold a gateway's HTTP session: a passed-in one (left open) or its own (closed by close()).

    A passed-in session that was closed is an error, never silently replaced:
    a replacement nobody owns would never be closed.
    """

    def __init__(self, session: aiohttp.ClientSession | None, owner: str) -> None:
        self._session = session
        self._owns = session is None
        self._owner = owner

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns:
                raise RuntimeError(f"the aiohttp session passed to {self._owner} is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns and self._session is not None:
            await self._session.close()
            self._session = None
