"""Run ``broadcaster migrate-redis``: copy a single-node data directory into an empty shared log.

The copy is the whole SQLite database as a snapshot at the start of the log
(``broadcaster.snapshot``); every node then starts from those bytes and
replays what follows, so timelines, hashes and checkpoints are the same
bytes as before and ``broadcaster verify`` gives the same result.

Stop the single node first: writes made to it after the copy are not in
Redis. A node's replica can be copied the same way (when Redis lost its data
and that replica is the most complete copy left). The command refuses a log
that is not empty, and records the id of the data directory's signing key in
Redis, so a node started with another key refuses to run (the key itself is
never copied: every node needs it as ``BROADCASTER_SIGNING_KEY``;
``--print-signing-key`` prints that value).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate-redis",
        help="copy a single-node data directory into Redis (BROADCASTER_REDIS_URL)",
    )
    parser.add_argument("--data-dir", dest="data_dir", required=True)
    parser.add_argument(
        "--print-signing-key",
        action="store_true",
        help="print the BROADCASTER_SIGNING_KEY value every node needs (a secret)",
    )
    parser.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from . import wal
    from .cli import _settings
    from .errors import ConfigError
    from .multinode import database_path
    from .signing import Signer, b64url
    from .snapshot import append_snapshot

    settings = _settings(args)
    if not settings.redis_url:
        raise ConfigError("set BROADCASTER_REDIS_URL to the Redis to copy the data into")
    source = database_path(settings)
    if not source.is_file():
        raise ConfigError(f"{source} does not exist: nothing to migrate")
    key_file = settings.data_dir / "signing.key"
    if not settings.signing_key and not key_file.is_file():
        raise ConfigError(f"{key_file} is missing: give the key as BROADCASTER_SIGNING_KEY")
    signer = Signer.load(settings.data_dir, settings.signing_key)
    log = wal.Log(wal.connect(settings.redis_url))
    try:
        log.client.set(wal.SIGNING_KEY_ID, signer.key_id, nx=True)
        shared = log.get(wal.SIGNING_KEY_ID)
        if shared != signer.key_id:
            raise ConfigError(f"Redis holds signing key {shared}, this directory {signer.key_id}")
        log.identity()
        head, size = append_snapshot(log, source)
    finally:
        log.client.close()
    print(f"Copied {source} ({size} bytes) into the shared log, up to entry {head}.")
    print(
        f"Every node must sign with key {signer.key_id}: set the same BROADCASTER_SIGNING_KEY"
        " on each, and start them on empty data directories."
    )
    if args.print_signing_key:
        value = settings.signing_key or b64url(key_file.read_bytes())
        print(f"BROADCASTER_SIGNING_KEY={value}")
    return 0
