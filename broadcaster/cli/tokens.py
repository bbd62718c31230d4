"""Run ``broadcaster token create|revoke|list``: bearer tokens, from the server's shell.

Offline, with no HTTP and no last-admin guard: the shell is the operator's
way back in when every admin token is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..auth.tokens import Tokens
from ..auth.tokens_api import list_tokens, revoke_token
from ..errors import HTTPError
from ..store import database_for
from ..store.contract import JobDatabase as Database
from .args import settings_from


def cmd_token_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)

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
    settings = settings_from(args)
    try:
        token = revoke_offline(database_for(settings), args.id)
    except HTTPError as exc:
        print(f"broadcaster: {exc.message}", file=sys.stderr)
        return 1
    print(f"revoked token {token['id']} ({token['name']}, {token['role']})")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    for token in list_offline(database_for(settings)):
        state = "active" if token["active"] else f"revoked {token['revoked_at']}"
        print(f"{token['id']}\t{token['role']}\t{token['name']}\t{token['department']}\t{state}")
    return 0


def revoke_offline(db: Database, token_id: int) -> dict[str, Any]:
    """Revoke ``token_id`` from the server's shell (no HTTP, no last-admin guard)."""

    async def run() -> dict[str, Any]:
        await db.open()
        try:
            return await db.write(
                lambda conn: revoke_token(conn, token_id, None, "cli", keep_last_admin=False)
            )
        finally:
            await db.close()

    return asyncio.run(run())


def list_offline(db: Database) -> list[dict[str, Any]]:
    """List tokens from the server's shell."""

    async def run() -> list[dict[str, Any]]:
        await db.open()
        try:
            return await db.read(list_tokens)
        finally:
            await db.close()

    return asyncio.run(run())


def add_parser(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="manage bearer tokens")
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
