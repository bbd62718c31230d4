"""Raise one exception family for everything the service refuses.

The tree::

    BroadcasterError
     ├── ConfigError              a BROADCASTER_* variable is wrong (names it)
     ├── IntegrityError           a timeline does not verify
     └── HTTPError                carries ``status`` and ``code`` for the JSON answer
          ├── BadRequest          400: malformed JSON, bad encoding, bad query
          ├── Unauthorized        401: missing or unknown token
          ├── Forbidden           403: valid token, wrong role
          ├── NotFound            404: unknown incident, entry, route
          ├── Conflict            409: wrong state, id taken, idempotency clash
          ├── PayloadTooLarge     413: body over the configured limit
          ├── UnsupportedMedia    415: not application/json
          ├── Unprocessable       422: wrong type, missing or unknown field
          ├── TooManyRequests     429: rate limit
          └── Unavailable         503: the store cannot take writes now

One middleware (``broadcaster.web.middleware``) turns an ``HTTPError`` into the
contract's ``{"error", "message", ...}`` body; extra keyword arguments given to
the constructor become extra members of that body (``field``, ``findings``).
"""

from __future__ import annotations

from typing import Any


class BroadcasterError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(BroadcasterError):
    """A configuration variable has a value the service cannot use."""


class IntegrityError(BroadcasterError):
    """A timeline, checkpoint or archive does not verify."""


class HTTPError(BroadcasterError):
    status = 500
    default_code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(HTTPError):
    status = 400
    default_code = "bad_request"


class Unauthorized(HTTPError):
    status = 401
    default_code = "unauthorized"


class Forbidden(HTTPError):
    status = 403
    default_code = "forbidden"


class NotFound(HTTPError):
    status = 404
    default_code = "not_found"


class Conflict(HTTPError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(HTTPError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMedia(HTTPError):
    status = 415
    default_code = "unsupported_media_type"


class Unprocessable(HTTPError):
    status = 422
    default_code = "invalid_field"


class TooManyRequests(HTTPError):
    status = 429
    default_code = "rate_limited"


class Unavailable(HTTPError):
    status = 503
    default_code = "unavailable"
