"""Turn the options every command shares into the service's ``Settings``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    """Read the configuration from the environment, with the options given overriding it."""
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "host", "port", "public_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = Path(value) if name == "data_dir" else value
    return Settings.from_env(**overrides)
