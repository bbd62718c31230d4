"""Read the service's configuration once, from ``BROADCASTER_*`` variables.

Every value is parsed when ``Settings.from_env()`` runs, so a bad value stops
the process at start with an error naming the variable, never later in a
request. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

PREFIX = "BROADCASTER_"
LANGS = ("zh-CN", "en")
DEFAULT_RETRY_SCHEDULE = (5, 30, 120, 600, 3600, 21600, 86400)
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{PREFIX}{name} must be between {low} and {high}, got {value}")
    return value


def _networks(name: str, raw: str) -> tuple[str, ...]:
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{PREFIX}{name} must list addresses or CIDRs separated by commas, got {part!r}"
            ) from None
    return tuple(found)


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{PREFIX}{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """The whole configuration; see the README's table for each variable."""

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    redis_url: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)
    lang: str = "zh-CN"
    max_body_bytes: int = 1024 * 1024
    signing_key: str | None = field(default=None, repr=False)
    require_approval: bool = False
    site_name: str = "突发事件信息发布"
    department: str = "应急管理局"
    client_queue: int = 256
    retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    delivery_timeout: int = 20
    webhook_allow: tuple[str, ...] = ()
    sms_gateway: str | None = field(default=None, repr=False)
    sms_sender: str = "12379"
    sms_signature: str = "应急管理局"
    sms_max_segments: int = 3
    sms_rate: int = 50
    sms_secret: str | None = field(default=None, repr=False)
    areas_file: Path | None = None
    worker: bool = True
    metrics_public: bool = False
    icp_filing: str = ""
    police_filing: str = ""
    site_code: str = ""
    trusted_proxies: tuple[str, ...] = ()
    proxy_header: str = "x-forwarded-for"
    max_live_per_client: int = 500
    max_live: int | None = None
    log_origin: str | None = None
    witnesses: tuple[str, ...] = ()
    #: Labels of custom figures: ``{"x-power-outage": ("停电户数", "Homes without power")}``.
    figure_labels: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``), then apply overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        def get(name: str) -> str | None:
            return env.get(PREFIX + name)

        if (raw := get("DATA_DIR")) is not None:
            values["data_dir"] = Path(raw)
        if (raw := get("HOST")) is not None:
            values["host"] = raw
        if (raw := get("PORT")) is not None:
            values["port"] = _int("PORT", raw, 0, 65535)
        if (raw := get("PUBLIC_URL")) is not None:
            if not raw.startswith(("http://", "https://")):
                raise ConfigError(f"{PREFIX}PUBLIC_URL must be an absolute http(s) URL")
            values["public_url"] = raw.rstrip("/")
        if raw := get("REDIS_URL"):
            if not raw.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(
                    f"{PREFIX}REDIS_URL must start with redis://, rediss:// or unix://"
                )
            values["redis_url"] = raw
        if raw := get("DATABASE_URL"):
            if not raw.startswith(("postgresql://", "postgres://")):
                raise ConfigError(
                    f"{PREFIX}DATABASE_URL must start with postgresql:// (unset = SQLite)"
                )
            values["database_url"] = raw
        if (raw := get("LANG")) is not None:
            if raw not in LANGS:
                raise ConfigError(f"{PREFIX}LANG must be one of {', '.join(LANGS)}, got {raw!r}")
            values["lang"] = raw
        if (raw := get("MAX_BODY_BYTES")) is not None:
            values["max_body_bytes"] = _int("MAX_BODY_BYTES", raw, 1024, 64 * 1024 * 1024)
        if raw := get("SIGNING_KEY"):
            values["signing_key"] = raw
        if (raw := get("REQUIRE_APPROVAL")) is not None:
            values["require_approval"] = _bool("REQUIRE_APPROVAL", raw)
        if (raw := get("SITE_NAME")) is not None:
            values["site_name"] = raw
        if (raw := get("DEPARTMENT")) is not None:
            values["department"] = raw
        if (raw := get("CLIENT_QUEUE")) is not None:
            values["client_queue"] = _int("CLIENT_QUEUE", raw, 1, 100_000)
        if raw := get("RETRY_SCHEDULE"):
            parts = [p.strip() for p in raw.split(",")]
            values["retry_schedule"] = tuple(_int("RETRY_SCHEDULE", p, 0, 7 * 86400) for p in parts)
        if (raw := get("DELIVERY_TIMEOUT")) is not None:
            values["delivery_timeout"] = _int("DELIVERY_TIMEOUT", raw, 1, 30)
        if raw := get("WEBHOOK_ALLOW"):
            values["webhook_allow"] = tuple(p.strip() for p in raw.split(",") if p.strip())
        if raw := get("SMS_GATEWAY"):
            values["sms_gateway"] = raw
        if (raw := get("SMS_SENDER")) is not None:
            values["sms_sender"] = raw
        if (raw := get("SMS_SIGNATURE")) is not None:
            values["sms_signature"] = raw
        if (raw := get("SMS_MAX_SEGMENTS")) is not None:
            values["sms_max_segments"] = _int("SMS_MAX_SEGMENTS", raw, 1, 10)
        if (raw := get("SMS_RATE")) is not None:
            values["sms_rate"] = _int("SMS_RATE", raw, 1, 10_000)
        if raw := get("SMS_SECRET"):
            values["sms_secret"] = raw
        if raw := get("AREAS_FILE"):
            values["areas_file"] = Path(raw)
        if (raw := get("WORKER")) is not None:
            values["worker"] = _bool("WORKER", raw)
        if (raw := get("METRICS_PUBLIC")) is not None:
            values["metrics_public"] = _bool("METRICS_PUBLIC", raw)
        if (raw := get("TRUSTED_PROXIES")) is not None:
            values["trusted_proxies"] = _networks("TRUSTED_PROXIES", raw)
        if (raw := get("PROXY_HEADER")) is not None:
            if raw.strip().lower() not in PROXY_HEADERS:
                raise ConfigError(
                    f"{PREFIX}PROXY_HEADER must be one of {', '.join(PROXY_HEADERS)}, got {raw!r}"
                )
            values["proxy_header"] = raw.strip().lower()
        if (raw := get("MAX_LIVE_PER_CLIENT")) is not None:
            values["max_live_per_client"] = _int("MAX_LIVE_PER_CLIENT", raw, 1, 1_000_000)
        if raw := get("MAX_LIVE"):
            values["max_live"] = _int("MAX_LIVE", raw, 1, 10_000_000)
        for name in ("ICP_FILING", "POLICE_FILING", "SITE_CODE"):
            if (raw := get(name)) is not None:
                values[name.lower()] = raw.strip()
        if raw := get("LOG_ORIGIN"):
            if any(c.isspace() for c in raw) or "+" in raw:
                raise ConfigError(f"{PREFIX}LOG_ORIGIN must be one line without spaces or '+'")
            values["log_origin"] = raw
        if raw := get("WITNESSES"):
            values["witnesses"] = _witnesses(raw)
        if raw := get("FIGURE_LABELS"):
            values["figure_labels"] = _figure_labels(raw)
        values.update(overrides)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def origin(self) -> str:
        """Return ``BROADCASTER_LOG_ORIGIN``, else the public URL without its scheme, plus /log."""
        if self.log_origin:
            return self.log_origin
        return self.public_url.split("://", 1)[-1].rstrip("/") + "/log"


def _witnesses(raw: str) -> tuple[str, ...]:
    """Check ``VKEY@URL,...`` now, so a typo stops the start rather than every submission."""
    from .log.client import WitnessEndpoint

    specs = tuple(p.strip() for p in raw.split(",") if p.strip())
    for spec in specs:
        try:
            WitnessEndpoint.parse(spec)
        except ValueError as exc:  # a NoteError is one
            raise ConfigError(f"{PREFIX}WITNESSES: {exc}") from None
    return specs


def _figure_labels(raw: str) -> dict[str, tuple[str, str]]:
    """Parse ``BROADCASTER_FIGURE_LABELS``: JSON ``{"x-key": "中文" | ["中文", "English"]}``."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    labels: dict[str, tuple[str, str]] = {}
    for key, value in (data or {}).items() if isinstance(data, dict) else ():
        names = [value, value] if isinstance(value, str) else value
        if not (key.startswith("x-") and isinstance(names, list) and len(names) == 2
                and all(isinstance(n, str) and n.strip() for n in names)):  # fmt: skip
            break
        labels[key] = (names[0].strip(), names[1].strip())
    else:
        if isinstance(data, dict):
            return labels
    raise ConfigError(
        f'{PREFIX}FIGURE_LABELS must be JSON like {{"x-power-outage": ["停电户数", "Homes without'
        ' power"]}} (keys start with x-)'
    )
