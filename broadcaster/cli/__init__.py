"""Run the ``broadcaster`` command: serve, tokens, verify, follow and the rest.

Each subcommand is a module of this package with ``add_parser(subparsers)``,
which sets ``func``; ``python -m broadcaster.cli`` runs it too.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import BroadcasterError
from . import export, follow, keys, migrate, serve, tokens, verify, witness, worker

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (serve, tokens, verify, follow, export, worker, migrate, witness, keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # configuration errors and the like: one clear line
        if isinstance(exc, BroadcasterError):
            print(f"broadcaster: {exc}", file=sys.stderr)
            return 2
        raise
