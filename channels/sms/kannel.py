"""Send SMS through Kannel 1.4.x's sendsms HTTP interface and parse its delivery reports.

Observed Kannel behaviours this module guards against: without ``charset=UTF-8&coding=2`` Chinese
silently becomes ``?`` yet the answer is still 202; invalid UTF-8 is accepted and forwarded
mangled; spaces in ``to`` split one message into several recipients; ``%X`` sequences in a
``dlr-url`` are Kannel escapes, so anything URL-encoded inside it would be rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from broadcaster.text import decode_bytes

from .gateway import HttpSession, SendResult
from .numbers import E164_RE
from .text import encoding_for

__all__ = ["DLR_TYPES", "KannelGateway", "parse_dlr"]

#: Kannel DLR types: 1 delivered, 2 undelivered, 4 buffered, 8 SMSC accepted, 16 SMSC rejected.
DLR_TYPES = frozenset({1, 2, 4, 8, 16})
DLR_MASK = 31
#: Our message ids travel inside dlr-url, so only characters that need no percent-encoding.
_MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_RETRY_4XX = frozenset({408, 429})
#: smsbox answers 403 with this for a moment after a restart (seen in
#: tests/faults/test_sms_gateway_kill.py) as well as for wrong credentials; a
#: retry costs little, and a real credentials error still ends dead after the
#: retry schedule, every attempt recorded.
_AUTH_REFUSED = "Authorization failed"


class KannelGateway:
    """Send SMS through Kannel's ``/cgi-bin/sendsms`` GET interface.

    UCS-2 texts go with ``charset=UTF-8&coding=2`` (smsbox converts to UTF-16BE), GSM-7 texts
    with ``charset=UTF-8&coding=0``. With ``dlr_url`` set, ``dlr-mask=31`` is requested and the
    dlr-url gets ``message_id=<id>&type=%d`` appended. Answers map as: 202 ``0:`` accepted,
    202 ``3:`` queued (taken, SMSC offline: only the DLR tells delivery), other 2xx queued,
    4xx failed except 408/429 retry, 5xx / connection error / timeout retry, anything else
    (3xx, an invalid URL) failed; redirects are not followed.

    Trade-offs: GET carries the password in the query string (Kannel rejects query credentials
    on POST; POST would need ``X-Kannel-*`` headers), so keep sendsms on loopback or a private
    network; a "retry" after a timeout may duplicate an SMS that Kannel did accept, since
    sendsms has no idempotency key; nothing here caps the length, and Kannel silently drops
    parts beyond its ``max-messages``, so compose texts with :func:`~.text.compose` first.
    """

    def __init__(
        self,
        sendsms_url: str,
        username: str,
        password: str,
        sender: str,
        dlr_url: str | None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        if dlr_url is not None and "%" in dlr_url:
            raise ValueError("dlr_url must not contain '%': Kannel rewrites %X sequences in it")
        if not sender or any(ch.isspace() for ch in sender):
            raise ValueError("sender must be non-empty and without whitespace")
        self._url = sendsms_url
        self._username = username
        self._password = password
        self._sender = sender
        self._dlr_url = dlr_url
        self._http = HttpSession(session, "KannelGateway")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, *, to: str, text: str, message_id: str) -> SendResult:
        """Submit one SMS; raise ``ValueError`` for a bad ``to``, ``text`` or ``message_id``."""
        if not E164_RE.fullmatch(to):
            raise ValueError(f"'to' must be E.164 without spaces (+8613812345678), got {to!r}")
        if not _MESSAGE_ID_RE.fullmatch(message_id):
            raise ValueError("message_id must be 1-128 characters of [A-Za-z0-9._~-]")
        if not text:
            raise ValueError("text is empty (Kannel would send an empty SMS)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"text is not valid Unicode (lone surrogate at {exc.start})") from exc

        params: dict[str, str] = {
            "username": self._username,
            "password": self._password,
            "from": self._sender,
            "to": to,
            "text": text,
            "charset": "UTF-8",
            "coding": "2" if encoding_for(text) == "ucs2" else "0",
        }
        if self._dlr_url is not None:
            params["dlr-mask"] = str(DLR_MASK)
            params["dlr-url"] = _append_query(self._dlr_url, {"message_id": message_id}) + (
                "&type=%d"
            )
        url = URL(_append_query(self._url, params), encoded=True)
        session = self._http.get()
        try:
            async with session.get(url, timeout=self._timeout, allow_redirects=False) as resp:
                body = decode_bytes(await resp.read()).strip()
                status = resp.status
        except TimeoutError:
            return SendResult("retry", "timeout waiting for Kannel sendsms")
        except aiohttp.InvalidURL as exc:  # configuration error: retrying cannot help
            return SendResult("failed", self._redact(f"invalid sendsms URL: {exc}"))
        except aiohttp.ClientError as exc:
            return SendResult("retry", self._redact(f"{type(exc).__name__}: {exc}"))
        return _map_answer(status, self._redact(body))

    async def close(self) -> None:
        """Close the HTTP session if this gateway created it (a passed-in session stays open)."""
        await self._http.close()

    def _redact(self, detail: str) -> str:
        return detail.replace(self._password, "***") if self._password else detail


def _map_answer(status: int, body: str) -> SendResult:
    detail = f"{status} {body}".strip()
    if 200 <= status < 300:
        if body.startswith("0:"):
            return SendResult("accepted", detail)
        return SendResult("queued", detail)
    if status in _RETRY_4XX or 500 <= status < 600 or _AUTH_REFUSED in body:
        return SendResult("retry", detail)
    return SendResult("failed", detail)


def _append_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    # quote (not quote_plus): "+" and " " are unambiguous as %2B and %20
    query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote, safe="")) if q)
    return urlunsplit(parts._replace(query=query))


def parse_dlr(query: Mapping[str, str]) -> tuple[str, int]:
    """Return ``(message_id, dlr_type)`` from a Kannel dlr-url callback's query parameters.

    Raises ``ValueError`` for a missing or malformed ``message_id`` or a ``type`` that is not
    one of Kannel's single DLR types (1, 2, 4, 8, 16). Trade-off: strict on purpose, since the
    endpoint is reachable by anyone who can reach the service and must not be fed guesses.
    """
    message_id = query.get("message_id")
    raw_type = query.get("type")
    if not isinstance(message_id, str) or not _MESSAGE_ID_RE.fullmatch(message_id):
        raise ValueError("DLR without a valid message_id")
    if not isinstance(raw_type, str) or not raw_type.isascii() or not raw_type.isdigit():
        raise ValueError(f"DLR type must be an integer, got {raw_type!r}")
    dlr_type = int(raw_type)
    if dlr_type not in DLR_TYPES:
        raise ValueError(f"unknown DLR type {dlr_type}")
    return message_id, dlr_type
