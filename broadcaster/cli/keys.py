"""Run ``broadcaster key rotate``: replace the site's signing key, announced in the log.

The new key is announced by a log leaf signed by the key it replaces
(``broadcaster.log.records``), the key history records when each key was in
force (``/.well-known/broadcaster-keys.json``), and the new key replaces
``DATA_DIR/signing.key``, or is printed once when the key comes from
``BROADCASTER_SIGNING_KEY``. Stop every node first and restart them with the
new key: a node refuses to start with a retired key, and a running node
stops signing log checkpoints once its key is retired. Tell every witness
the new verifier key (``--log NEW_VKEY``; keep the old one until the first
checkpoint under the new key is cosigned).

The new key is written to ``signing.key.new`` before the database commits
and renamed over ``signing.key`` after, so a crash loses neither key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..clock import now_ts
from ..log import records
from ..log.signing import Signer, b64url, unb64url
from ..log.site import vkey_of
from ..settings import Settings
from ..store import database_for
from ..store import log as log_store
from ..store.timeline import latest_key_id
from .args import settings_from


def rotate(settings: Settings, old: Signer, new: Signer) -> int:
    """Retire ``old``, put ``new`` in force and log the announcement; return its leaf index."""
    valid_from = now_ts()
    body = records.announcement_body(new.key_id, new.public_raw, valid_from, old.key_id)
    leaf = records.announcement_leaf(body, old.private.sign(body))

    def job(conn: Any) -> int:
        log_store.prepare(conn, old.key_id, b64url(old.public_raw), latest_key_id(conn))
        return log_store.rotate_key(
            conn, old.key_id, new.key_id, b64url(new.public_raw), valid_from, leaf
        )

    async def run() -> int:
        db = database_for(settings)
        await db.open()
        try:
            return await db.write(job)
        finally:
            await db.close()

    return asyncio.run(run())


def _write_key(path: Path, signer: Signer) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(unb64url(signer.seed()))
        handle.flush()
        os.fsync(handle.fileno())


def cmd_rotate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    old = Signer.load(settings.data_dir, settings.signing_key)
    new = Signer(Ed25519PrivateKey.generate())
    pending = settings.data_dir / "signing.key.new"
    if not settings.signing_key:
        _write_key(pending, new)
    try:
        index = rotate(settings, old, new)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    if settings.signing_key:
        print(f"BROADCASTER_SIGNING_KEY={new.seed()}")
        where = "set BROADCASTER_SIGNING_KEY on every node to the value above (shown once)"
    else:
        os.replace(pending, settings.data_dir / "signing.key")
        where = f"the new key is in {settings.data_dir / 'signing.key'}"
    print(
        f"key {old.key_id} retired; key {new.key_id} in force, announced at log leaf {index}.\n"
        f"Restart every node: {where}.\n"
        f"Give every witness the new log key: --log {vkey_of(settings.origin, new.public_raw)}",
        file=sys.stderr,
    )
    return 0


def add_parser(subparsers: Any) -> None:
    key = subparsers.add_parser("key", help="manage the site's signing key")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    rotate_cmd = key_sub.add_parser("rotate", help="replace the signing key, announced in the log")
    rotate_cmd.add_argument("--data-dir", dest="data_dir")
    rotate_cmd.set_defaults(func=cmd_rotate)
