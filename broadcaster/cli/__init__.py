"""Run the ``broadcaster`` command: serve, tokens, verify, follow and the rest.

Exit codes of ``verify``: 0 intact, 1 tampered (it says where), 2 could not
check (network, HTTP or format problems).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ..log.note import parse_note
from ..settings import Settings

log = logging.getLogger("broadcaster")

#: Modules that add subcommands; each has ``add_parser(subparsers)`` and sets ``func``.
EXTRA_COMMANDS: tuple[str, ...] = (
    "broadcaster.cli.follow",
    "broadcaster.log.archive",
    "broadcaster.cli.worker",
    "broadcaster.cli.migrate",
    "broadcaster.cli.witness",
    "broadcaster.cli.keys",
)


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


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "host", "port", "public_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = Path(value) if name == "data_dir" else value
    return Settings.from_env(**overrides)


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

    settings = _settings(args)
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


def cmd_token_create(args: argparse.Namespace) -> int:
    from ..auth.tokens import Tokens
    from ..store import database_for

    settings = _settings(args)

    async def run() -> str:
        db = database_for(settings)
        await db.open()
        try:
            _, token = await Tokens(db).create(args.name, args.department, args.role)
            return token
        finally:
            await db.close()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(asyncio.run(run()))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from ..auth.tokens_api import revoke_offline
    from ..errors import HTTPError
    from ..store import database_for

    settings = _settings(args)
    try:
        token = revoke_offline(database_for(settings), args.id)
    except HTTPError as exc:
        print(f"broadcaster: {exc.message}", file=sys.stderr)
        return 1
    print(f"revoked token {token['id']} ({token['name']}, {token['role']})")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from ..auth.tokens_api import list_offline
    from ..store import database_for

    settings = _settings(args)
    for token in list_offline(database_for(settings)):
        state = "active" if token["active"] else f"revoked {token['revoked_at']}"
        print(f"{token['id']}\t{token['role']}\t{token['name']}\t{token['department']}\t{state}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..log.fetch import CouldNotCheck, fetch_timeline
    from ..log.verify_log import State, check_incident, check_log
    from ..log.verify_timeline import check_timeline, print_report

    witnesses = args.witness or []
    quorum = len(witnesses) if args.quorum is None else args.quorum
    if quorum > len(witnesses):
        print(f"could not check: --quorum {quorum} needs as many --witness", file=sys.stderr)
        return 2
    if args.file:  # an archive from `broadcaster export`, checked with no network
        from ..log.archive import verify_file

        return verify_file(Path(args.file), args.checkpoint, witnesses, quorum)
    if not (args.base_url and args.incident):
        print("could not check: give BASE_URL and INCIDENT_ID, or --file FILE", file=sys.stderr)
        return 2
    saved = None
    try:
        if args.checkpoint:
            saved = json.loads(Path(args.checkpoint).read_text("utf-8"))
        state = State.load(Path(args.state) if args.state else State.default_path())
        data = asyncio.run(fetch_timeline(args.base_url, args.incident))
        origin = parse_note(data["log"]).text.split("\n", 1)[0]
        found = check_log(
            data["log"],
            data["keys"],
            data["leaves"],
            witnesses=witnesses,
            quorum=quorum,
            remembered=state.remembered(origin),
            remembered_key=state.remembered_key(origin),
        )
    except (CouldNotCheck, OSError, ValueError) as exc:
        print(f"could not check: {exc}", file=sys.stderr)
        return 2
    incident_problems = check_incident(args.incident, data["incident"], data["entries"], found)
    if data["incident"] is None and not incident_problems:
        print(f"could not check: the site has no incident {args.incident!r}", file=sys.stderr)
        return 2
    entries, checkpoint = data["entries"], data["checkpoint"]
    # The signed head and the log were read before the entries: entries newer
    # than both were appended meanwhile and are not vouched for by a signature yet.
    signed = checkpoint.get("seq") if isinstance(checkpoint, dict) else 0
    logged = max(found.leaves.get(args.incident, {0: []}))
    covered = max(signed if isinstance(signed, int) else 0, logged)
    newer = max(0, len(entries) - covered)
    report = check_timeline(args.incident, entries[:covered], checkpoint, data["keys"], saved,
                            newer_allowed=True)  # fmt: skip
    for problem in found.all_problems:
        report.fail(None, problem)
    for seq, problem in incident_problems:
        report.fail(seq, problem)
    if found.rememberable and found.checkpoint is not None and found.key_id is not None:
        state.remember(found.checkpoint, data["log"], found.key_id)
        try:
            state.save()
        except OSError as exc:
            print(f"warning: cannot save {state.path}: {exc}", file=sys.stderr)
    where = ""
    if found.checkpoint is not None:
        cosigned = f", cosigned by {', '.join(found.cosigners)}" if found.cosigners else ""
        where = f"; in log {found.checkpoint.origin} at size {found.checkpoint.size}{cosigned}"
    if newer:
        where += f"; {newer} newer entries not yet signed (not checked)"
    return print_report(report, checkpoint, where)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the whole service in one process")
    serve.add_argument("--data-dir", dest="data_dir")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--public-url", dest="public_url")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="manage bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a new token once")
    create.add_argument("--name", required=True)
    create.add_argument("--department", required=True)
    create.add_argument("--role", required=True, choices=("admin", "reviewer", "editor"))
    create.add_argument("--data-dir", dest="data_dir")
    create.set_defaults(func=cmd_token_create)
    revoke = token_sub.add_parser("revoke", help="revoke a token at once (by its id)")
    revoke.add_argument("id", type=int)
    revoke.add_argument("--data-dir", dest="data_dir")
    revoke.set_defaults(func=cmd_token_revoke)
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--data-dir", dest="data_dir")
    listing.set_defaults(func=cmd_token_list)

    verify = sub.add_parser("verify", help="check a published timeline end to end")
    verify.add_argument("base_url", nargs="?")
    verify.add_argument("incident", nargs="?")
    verify.add_argument("--file", help="verify an archive written by 'broadcaster export', offline")
    verify.add_argument("--checkpoint", help="a checkpoint JSON saved earlier")
    verify.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a witness's verifier key whose cosignature is required (repeatable)",
    )
    verify.add_argument(
        "--quorum", type=int, help="how many of the --witness keys must cosign (default: all)"
    )
    verify.add_argument(
        "--state",
        help="file remembering the last log checkpoint per origin"
        " (default $XDG_STATE_HOME/broadcaster/verify-state.json)",
    )
    verify.set_defaults(func=cmd_verify)
    for name in EXTRA_COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # configuration errors and the like: one clear line
        from ..errors import BroadcasterError

        if isinstance(exc, BroadcasterError):
            print(f"broadcaster: {exc}", file=sys.stderr)
            return 2
        raise
