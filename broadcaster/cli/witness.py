"""Run ``broadcaster witness``: a transparency-log witness anyone can operate.

``broadcaster witness --data-dir DIR --name NAME --log VKEY [--log VKEY ...]
[--host H] [--port P]``. The witness key (an Ed25519 seed, ``witness.key``,
mode 0600) and the state (``witness.db``) live in DIR; the key is created on
first start. On start it prints its verifier key, which log operators put in
their witness list, then the address it listens on (``--port 0`` picks a free
port, which the line shows). SIGINT or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ..errors import ConfigError
from ..log.cosignature import Cosigner
from ..log.note import Ed25519Verifier, NoteError, check_key_name
from ..log.witness import Witness, create_witness_app
from ..store.witness_state import WitnessState

KEY_FILE = "witness.key"
STATE_FILE = "witness.db"
DEFAULT_PORT = 8090


def load_witness_key(data_dir: Path) -> Ed25519PrivateKey:
    """Return the witness key from ``data_dir``, creating it (mode 0600) on first use."""
    path = data_dir / KEY_FILE
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != 32:
            raise ConfigError(f"{path} is not a 32-byte Ed25519 seed")
        return Ed25519PrivateKey.from_private_bytes(raw)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    return private


def build_witness(data_dir: Path, name: str, log_vkeys: list[str]) -> Witness:
    """Return a witness over ``data_dir`` for the logs given as vkeys; ConfigError if one is bad."""
    try:
        check_key_name(name)
        logs = [Ed25519Verifier.from_vkey(vkey) for vkey in log_vkeys]
    except NoteError as exc:
        raise ConfigError(f"broadcaster witness: {exc}") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    cosigner = Cosigner(name, load_witness_key(data_dir))
    return Witness(cosigner, logs, WitnessState(data_dir / STATE_FILE))


async def serve(witness: Witness, host: str, port: int) -> None:
    """Serve ``witness`` until SIGINT or SIGTERM."""
    runner = web.AppRunner(create_witness_app(witness), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        print(f"witness vkey: {witness.cosigner.vkey}", flush=True)
        print(f"witness listening on http://{host}:{bound[1]}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_witness(args: argparse.Namespace) -> int:
    witness = build_witness(Path(args.data_dir), args.name, args.log)
    asyncio.run(serve(witness, args.host, args.port))
    return 0


def add_parser(subparsers: Any) -> None:
    """Add the ``witness`` subcommand."""
    parser = subparsers.add_parser("witness", help="run a transparency-log witness")
    parser.add_argument("--data-dir", dest="data_dir", required=True)
    parser.add_argument("--name", required=True, help="the witness's key name, e.g. example.org/w1")
    parser.add_argument(
        "--log", action="append", required=True, help="a log's verifier key (repeatable)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.set_defaults(func=cmd_witness)
