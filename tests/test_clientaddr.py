"""Tests for ``broadcaster.web.clientaddr``: who the client is, behind trusted proxies or not."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from conftest import create_incident, make_token

from broadcaster.app import create_app
from broadcaster.errors import ConfigError
from broadcaster.settings import Settings
from broadcaster.web.clientaddr import ClientAddress, source_of

PROXY = "10.0.0.10"


def request_from(peer: str, headers: dict[str, str]) -> Any:
    """Return a request whose TCP peer is ``peer``."""

    class Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (peer, 40000) if name == "peername" else default

    return make_mocked_request("GET", "/", headers=headers, transport=Transport())


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # not a proxy: its header is ignored
        (PROXY, "198.51.100.1", "198.51.100.1"),
        (PROXY, "198.51.100.1, 203.0.113.9", "203.0.113.9"),  # right-most untrusted wins
        (PROXY, "198.51.100.1, 10.0.0.11", "198.51.100.1"),  # trusted hops are walked past
        (PROXY, "10.0.0.12, 10.0.0.11", "10.0.0.12"),  # all trusted: the left-most
        (PROXY, "198.51.100.1, garbage", PROXY),  # unparseable: the proxy answers for it
        (PROXY, "[2001:db8::1]:443", "2001:db8::1"),
        (PROXY, "::ffff:198.51.100.7", "198.51.100.7"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(
    peer: str, header: str, client: str
) -> None:
    """Only a trusted peer may name the client; the chain is read from the right."""
    rule = ClientAddress(["10.0.0.0/24"])
    assert rule.client_of(request_from(peer, {"X-Forwarded-For": header})) == client


def test_only_the_configured_header_is_read() -> None:
    """A header the proxy does not set (and so passes through) never names the client."""
    spoofed = {"Forwarded": "for=198.51.100.66", "X-Real-IP": "198.51.100.77"}
    by_xff = ClientAddress([PROXY])
    assert by_xff.client_of(request_from(PROXY, spoofed)) == PROXY
    by_forwarded = ClientAddress([PROXY], "forwarded")
    headers = {"Forwarded": 'for=198.51.100.66, for="[2001:db8::5]"', "X-Forwarded-For": "1.2.3.4"}
    assert by_forwarded.client_of(request_from(PROXY, headers)) == "2001:db8::5"
    by_real_ip = ClientAddress([PROXY], "x-real-ip")
    assert by_real_ip.client_of(request_from(PROXY, spoofed)) == "198.51.100.77"


def test_sources_group_ipv6_by_64() -> None:
    """Limits count an IPv4 address or an IPv6 /64 as one source."""
    assert source_of("198.51.100.7") == "198.51.100.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::2")
    assert source_of("2001:db8:1:2::1") != source_of("2001:db8:1:3::1")
    assert source_of("::ffff:198.51.100.7") == "198.51.100.7"


def test_trusted_proxies_are_checked_at_start() -> None:
    """A bad entry in BROADCASTER_TRUSTED_PROXIES stops the process, naming the variable."""
    env = {"BROADCASTER_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32"}
    assert Settings.from_env(env).trusted_proxies == ("10.0.0.0/8", "2001:db8::/32")
    with pytest.raises(ConfigError, match="BROADCASTER_TRUSTED_PROXIES"):
        Settings.from_env({"BROADCASTER_TRUSTED_PROXIES": "10.0.0.300"})
    with pytest.raises(ConfigError, match="BROADCASTER_PROXY_HEADER"):
        Settings.from_env({"BROADCASTER_PROXY_HEADER": "x-client"})


async def test_without_trusted_proxies_forwarded_headers_are_ignored(
    client: TestClient, editor: dict[str, str]
) -> None:
    """By default a client cannot escape its question bucket by naming another address."""
    incident = await create_incident(client, editor)
    url = f"/api/incidents/{incident['id']}/questions"
    codes = []
    for n in range(8):
        spoof = {"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}"}
        response = await client.post(url, json={"text": f"第{n}个问题：路通了吗？"}, headers=spoof)
        codes.append(response.status)
    assert codes[-1] == 429


async def test_one_ipv6_64_shares_one_question_bucket(settings: Settings) -> None:
    """Addresses of one IPv6 /64 (behind a trusted proxy) share their rate and pending limits."""
    app = create_app(settings.with_(trusted_proxies=("127.0.0.1/32",)))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        editor = {"Authorization": "Bearer " + await make_token(client, "editor")}
        incident = await create_incident(client, editor)
        url = f"/api/incidents/{incident['id']}/questions"
        codes = []
        for n in range(8):
            headers = {"X-Forwarded-For": f"2001:db8:0:1::{n + 1:x}"}
            response = await client.post(url, json={"text": f"第{n}个问题"}, headers=headers)
            codes.append(response.status)
        assert codes[-1] == 429
        other = {"X-Forwarded-For": "2001:db8:0:2::1"}  # the next /64 is another source
        response = await client.post(url, json={"text": "另一个问题：路通了吗"}, headers=other)
        assert response.status == 202
