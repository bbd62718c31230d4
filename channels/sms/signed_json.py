"""Talk to a commercial SMS gateway over signed JSON: one POST per message, signed callbacks back.

Outbound, each message is ``POST <url>`` with the body
``{"id", "account", "from", "to", "text", "dlr_url"}`` (UTF-8 JSON) and the
Standard Webhooks headers (``webhook-id`` is our message id, stable across
retries, so the gateway can de-duplicate), signed with the shared
``whsec_`` secret. A 2xx answer may say ``{"status": "queued"}``; otherwise
it means accepted. 408, 429, 5xx, timeouts and connection errors are retried;
any other answer is a permanent failure.

Inbound, the gateway signs its callbacks the same way: delivery reports
``{"message_id", "status"}`` to ``/sms/dlr`` and incoming messages
``{"from", "to", "text", "msgid"}`` to ``/sms/inbound``. ``verify`` checks
them (and refuses timestamps more than five minutes off, against replay).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from broadcaster.text import decode_bytes

from ..webhooks import sign
from .gateway import HttpSession, Outcome, SendResult
from .numbers import E164_RE

#: Delivery report statuses a signed JSON gateway may send, as our states.
DLR_STATUSES = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "rejected": "undelivered",
    "accepted": "accepted",
    "buffered": "buffered",
    "queued": "queued",
}


class SignedJsonGateway:
    """Send SMS as signed JSON POSTs; ``verify`` authenticates the gateway's callbacks."""

    def __init__(
        self,
        url: str,
        secret: str,
        account: str,
        sender: str,
        dlr_url: str | None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._webhook = Webhook(secret)  # raises for a secret that is not base64
        self._url = url
        self._secret = secret
        self._account = account
        self._sender = sender
        self._dlr_url = dlr_url
        self._http = HttpSession(session, "SignedJsonGateway")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, *, to: str, text: str, message_id: str) -> SendResult:
        """Submit one SMS; raise ``ValueError`` for a ``to`` that is not E.164."""
        if not E164_RE.fullmatch(to):
            raise ValueError(f"'to' must be E.164 (+8613812345678), got {to!r}")
        body = json.dumps(
            {
                "id": message_id,
                "account": self._account,
                "from": self._sender,
                "to": to,
                "text": text,
                "dlr_url": self._dlr_url,
            },
            ensure_ascii=False,
        )
        headers = sign(self._secret, message_id, body)
        try:
            async with self._http.get().post(
                self._url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(64 * 1024)
                status = response.status
        except TimeoutError:
            return SendResult("retry", "timeout waiting for the SMS gateway")
        except aiohttp.ClientError as exc:
            return SendResult("retry", f"{type(exc).__name__}: {exc}")
        return _map_answer(status, raw)

    def verify(self, body: bytes, headers: Any) -> dict[str, Any]:
        """Return a signed callback's JSON object; raise ``ValueError`` if it does not verify."""
        try:
            data = self._webhook.verify(body, dict(headers))
        except Exception as exc:  # the library raises several types for bad input
            raise ValueError(f"the callback signature does not verify: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("the callback body must be a JSON object")
        return data

    async def close(self) -> None:
        """Close the HTTP session if this gateway created it (a passed-in session stays open)."""
        await self._http.close()


def _map_answer(status: int, raw: bytes) -> SendResult:
    text = decode_bytes(raw, limit=200).strip()
    detail = f"{status} {text}".strip()
    if 200 <= status < 300:
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        gateway_id = answer.get("id") if isinstance(answer.get("id"), str) else None
        outcome: Outcome = "queued" if answer.get("status") == "queued" else "accepted"
        return SendResult(outcome, detail, gateway_id)
    if status in (408, 429) or 500 <= status < 600:
        return SendResult("retry", detail)
    return SendResult("failed", detail)
