"""Turn every error into the contract's JSON and put security headers on every answer.

Every response, errors included, gets the ``SECURITY_HEADERS``; HTML pages
also get the strict ``CSP`` (no inline script or style, no framing, no
plugins). CORS: ``Access-Control-Allow-Origin: *`` goes only on GET and HEAD
answers of the public read endpoints (``_CORS_READ``: the incidents API,
search, OpenAPI, feeds, CAP and the signing keys), so any site can show the
timeline; it is stripped from everything else, and preflight ``OPTIONS``
requests are refused (405, no CORS headers), so no other origin's script can
send a write, or a request carrying a bearer token, from a browser.

Every answer that is not a stream also gets these (streams set ``Server``
themselves): ``Server`` names no version; a staff answer (the handler checked a presented
token: ``auth`` sets ``STAFF_ANSWER`` in the request's task) and every 401
or 403 is ``Cache-Control: no-store``, so no cache or browser history keeps
what only staff may see (a webhook's secret, pending questions), while a
public feed fetched with a token keeps its own caching; and
``Strict-Transport-Security`` is sent when ``BROADCASTER_PUBLIC_URL`` is https.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from aiohttp import web

from ..appkeys import NOT_FOUND_PAGE
from ..errors import HTTPError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Codes for aiohttp's own errors (routing, size limit, methods).
_AIOHTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

#: Public read endpoints any origin may read (GET/HEAD only).
_CORS_READ = re.compile(
    r"^/(?:api/(?:incidents|search|openapi\.json)(?:/|$)|\.well-known/"
    r"|feed\.(?:atom|rss|json)$"
    r"|incidents/[^/]+/(?:feed\.(?:atom|rss|json)|cap\.xml|entries/[^/]+/cap\.xml)$)"
)
#: Reads under those prefixes that only staff may make.
_CORS_PRIVATE = re.compile(r"^/api/incidents/[^/]+/sms$")


def cors_readable(method: str, path: str) -> bool:
    """Tell whether other origins may read this answer (public GET/HEAD endpoints only)."""
    return (
        method in ("GET", "HEAD")
        and _CORS_READ.match(path) is not None
        and _CORS_PRIVATE.match(path) is None
    )


def secure(request: web.Request, response: web.StreamResponse) -> None:
    """Add the security headers and apply the CORS policy, unless already sent."""
    if response.prepared:
        return
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER
    if request.app.get(HTTPS):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if STAFF_ANSWER.get() or response.status in (401, 403):
        headers["Cache-Control"] = "no-store"
    if response.headers.get("Content-Type", "").startswith("text/html"):
        response.headers.setdefault("Content-Security-Policy", CSP)
    if cors_readable(request.method, request.path):
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        response.headers.setdefault("Access-Control-Expose-Headers", "ETag")
    else:
        response.headers.pop("Access-Control-Allow-Origin", None)


SERVER = "broadcaster"
HSTS = "max-age=31536000"
#: True when the public URL is https: answers then carry ``Strict-Transport-Security``.
HTTPS = web.AppKey("https_only", bool)
#: Set in a request's task once its handler has checked a token (see the docstring).
STAFF_ANSWER: ContextVar[bool] = ContextVar("staff_answer", default=False)


def error_response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        body, status=status, headers=headers, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer errors as JSON, then secure every answer (one middleware: one pass per request)."""
    response = await _errors(request, handler)
    secure(request, response)
    return response


async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPError as exc:
        return error_response(exc.status, exc.body(), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        page = request.app.get(NOT_FOUND_PAGE)
        if exc.status == 404 and page and "text/html" in request.headers.get("Accept", ""):
            return await page(request)  # a person with a mangled link gets a way on
        code = _AIOHTTP_CODES.get(exc.status, f"http_{exc.status}")
        message = exc.reason
        if exc.status == 413:
            message = "the request body is larger than the configured limit"
        if exc.status == 404:
            message = f"no such resource: {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, {"error": code, "message": message}, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, {"error": "internal_error", "message": "internal error"})
