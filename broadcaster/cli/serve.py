"""Run ``broadcaster serve``: the whole service in one process."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from aiohttp import web

from ..settings import Settings
from .args import settings_from

#: aiohttp's limits for ``serve`` (docs/reliability.md). A connection that has
#: not completed a request within ``keepalive_timeout`` seconds is closed: that
#: ends slowloris clients trickling headers (aiohttp has no separate header
#: timeout) and idle keep-alives, and stays above nginx's 60 s upstream
#: keep-alive so a proxy never reuses a connection we just closed. A request
#: line or header over 8 KiB, or over 100 headers, is refused with 400 and the
#: connection closed; bodies are capped by ``BROADCASTER_MAX_BODY_BYTES``. The
#: listen backlog absorbs a reconnect storm of thousands of clients at once.
SERVE_LIMITS: dict[str, Any] = {
    "keepalive_timeout": 75.0,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 100,
    "backlog": 2048,
}


async def _first_admin(app: web.Application) -> None:
    from ..auth.tokens import TOKENS

    tokens = app[TOKENS]
    if await tokens.count() == 0:
        _, token = await tokens.create("admin", app["department_name"], "admin")
        print(
            f"A new data directory: this admin token is shown once, keep it safe:\n  {token}\n",
            flush=True,
        )


def trust_notice(settings: Settings) -> str:
    """Say at start whom client addresses and SMS gateway callbacks are taken from."""
    lines = []
    if settings.trusted_proxies:
        lines.append(
            f"Client addresses: from {settings.proxy_header} when the peer is one of "
            f"{', '.join(settings.trusted_proxies)}; otherwise the peer address."
        )
    else:
        lines.append("Client addresses: the peer address (no BROADCASTER_TRUSTED_PROXIES).")
    if settings.sms_gateway:
        if settings.sms_secret:
            lines.append("SMS callbacks (/sms/inbound, /sms/dlr) need BROADCASTER_SMS_SECRET.")
        elif settings.trusted_proxies:
            lines.append(
                "SMS callbacks are REFUSED: a proxy is configured and BROADCASTER_SMS_SECRET"
                " is not set."
            )
        else:
            lines.append(
                "SMS callbacks are accepted without a secret only from a loopback peer sending"
                " no forwarding header; set BROADCASTER_SMS_SECRET if a proxy or another host"
                " is in between."
            )
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..app import create_app
    from ..web.livecap import DESCRIPTORS, raise_nofile

    settings = settings_from(args)
    nofile = raise_nofile()  # before the app sizes its live-connection cap from it
    app = create_app(settings)
    app["department_name"] = settings.department
    app.on_startup.append(_first_admin)
    print(
        f"Broadcaster on http://{settings.host}:{settings.port}/ (data in {settings.data_dir})",
        flush=True,
    )
    notice = trust_notice(settings) + f"\nFile descriptors: {nofile}."

    async def tell(_: web.Application) -> None:  # after the admin token: the last start-up line
        print(notice, flush=True)

    app.on_startup.append(tell)
    descriptors = app[DESCRIPTORS]
    for handler in logging.getLogger().handlers:  # running out of descriptors logs once a while
        handler.addFilter(descriptors.filter)
    # What exists at start (modules, templates, the app) is never garbage:
    # frozen, full collections skip it, which shortens their pauses under
    # thousands of live connections.
    gc.freeze()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        handle_signals=True,
        access_log=None,
        **SERVE_LIMITS,
    )
    return 0


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the whole service in one process")
    serve.add_argument("--data-dir", dest="data_dir")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--public-url", dest="public_url")
    serve.set_defaults(func=cmd_serve)
