"""Configuration is read once from BROADCASTER_* variables and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broadcaster.app import create_app
from broadcaster.errors import ConfigError
from broadcaster.settings import Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("PUBLIC_URL", "example.gov.cn"),
        ("REDIS_URL", "http://127.0.0.1"),
        ("LANG", "fr"),
        ("REQUIRE_APPROVAL", "maybe"),
        ("RETRY_SCHEDULE", "5,x"),
        ("SMS_MAX_SEGMENTS", "0"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    """A bad value stops start-up with an error naming its variable."""
    with pytest.raises(ConfigError, match=f"BROADCASTER_{name}"):
        Settings.from_env({f"BROADCASTER_{name}": value})


def test_values_are_parsed() -> None:
    """Numbers, lists and flags arrive typed; the public URL loses its trailing slash."""
    settings = Settings.from_env(
        {
            "BROADCASTER_PORT": "9000",
            "BROADCASTER_PUBLIC_URL": "https://yjj.example.gov.cn/",
            "BROADCASTER_RETRY_SCHEDULE": "1, 2,3",
            "BROADCASTER_REQUIRE_APPROVAL": "yes",
        }
    )
    assert settings.port == 9000
    assert settings.public_url == "https://yjj.example.gov.cn"
    assert settings.retry_schedule == (1, 2, 3)
    assert settings.require_approval is True


def test_secrets_are_masked_in_repr() -> None:
    """Secrets never show in a settings repr (logs, tracebacks)."""
    settings = Settings.from_env(
        {"BROADCASTER_SMS_SECRET": "s3cret-value", "BROADCASTER_SIGNING_KEY": "k3y-value"}
    )
    assert "s3cret-value" not in repr(settings)
    assert "k3y-value" not in repr(settings)


async def test_filing_numbers_appear_in_the_footer(tmp_path: Path) -> None:
    """Filing numbers from configuration are shown on every public page."""
    settings = Settings.from_env(
        {"BROADCASTER_ICP_FILING": "鲁ICP备12345678号", "BROADCASTER_SITE_CODE": "3702000001"},
        data_dir=tmp_path / "data",
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        page = await (await client.get("/")).text()
    assert "鲁ICP备12345678号" in page
    assert "3702000001" in page
