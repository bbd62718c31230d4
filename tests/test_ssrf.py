"""Test that webhooks never reach internal addresses, however the URL or the DNS disguises them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient
from conftest import TIMEOUT, create_incident, post_entry
from webhook_receiver import Receiver

from broadcaster.appkeys import DB
from channels.webhooks.ssrf import Guard, Refused, SafeResolver, check_registration

REFUSED_URLS = [
    ("http://127.0.0.1/", "url_forbidden_address"),
    ("http://127.255.0.9:8080/", "url_forbidden_address"),
    ("http://0.0.0.0/", "url_forbidden_address"),
    ("http://10.1.2.3/", "url_forbidden_address"),
    ("http://172.16.0.1/", "url_forbidden_address"),
    ("http://192.168.1.1/", "url_forbidden_address"),
    ("http://100.64.0.1/", "url_forbidden_address"),
    ("http://169.254.169.254/latest/meta-data/", "url_forbidden_address"),
    ("http://224.0.0.1/", "url_forbidden_address"),
    ("http://240.0.0.1/", "url_forbidden_address"),
    ("http://255.255.255.255/", "url_forbidden_address"),
    ("http://[::1]/", "url_forbidden_address"),
    ("http://[::]/", "url_forbidden_address"),
    ("http://[fe80::1]/", "url_forbidden_address"),
    ("http://[fc00::1]/", "url_forbidden_address"),
    ("http://[ff02::1]/", "url_forbidden_address"),
    ("http://[::ffff:127.0.0.1]/", "url_forbidden_address"),
    ("http://[::ffff:7f00:1]/", "url_forbidden_address"),
    ("http://[::127.0.0.1]/", "url_forbidden_address"),
    ("http://[2002:7f00:1::]/", "url_forbidden_address"),
    ("http://[2002:a9fe:a9fe::1]/", "url_forbidden_address"),
    ("http://[64:ff9b::7f00:1]/", "url_forbidden_address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "url_forbidden_address"),
    ("http://[fe80::1%25eth0]/", "url_forbidden_address"),
    ("http://2130706433/", "url_ambiguous_ip"),
    ("http://0x7f000001/", "url_ambiguous_ip"),
    ("http://0x7f.0.0.1/", "url_ambiguous_ip"),
    ("http://017700000001/", "url_ambiguous_ip"),
    ("http://0177.0.0.1/", "url_ambiguous_ip"),
    ("http://127.1/", "url_ambiguous_ip"),
    ("http://127.0.1/", "url_ambiguous_ip"),
    ("http://user:pw@93.184.215.14/", "url_credentials"),
    ("file:///etc/passwd", "url_scheme"),
    ("gopher://93.184.215.14/", "url_scheme"),
    ("http:///nohost", "url_host"),
]


class FixedResolver(AbstractResolver):
    """Answer every lookup with the given addresses, as a hostile DNS server could."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("url", "code"), REFUSED_URLS)
async def test_internal_and_ambiguous_targets_are_refused(url: str, code: str) -> None:
    """Each URL form is refused with its code before any request is made."""
    with pytest.raises(Refused) as refused:
        await check_registration(Guard(), url, FixedResolver("93.184.215.14"))
    assert refused.value.code == code


@pytest.mark.parametrize(
    "addresses",
    [("127.0.0.1",), ("93.184.215.14", "10.0.0.1"), ("::1",), ("2606:2800::1", "::ffff:a00:1")],
)
async def test_names_resolving_to_any_internal_address_are_refused(
    addresses: tuple[str, ...],
) -> None:
    """A name is refused if any one of its addresses is internal (a rebinding name may use it)."""
    with pytest.raises(Refused) as refused:
        await check_registration(Guard(), "https://hooks.example/x", FixedResolver(*addresses))
    assert refused.value.code == "url_forbidden_address"


async def test_public_names_and_allowlisted_targets_pass() -> None:
    """Public addresses pass; the allowlist admits a host name, an address or a network."""
    public = FixedResolver("93.184.215.14", "2606:2800:220:1:248:1893:25c8:1946")
    assert await check_registration(Guard(), "https://hooks.example/x", public)
    allow = Guard(["hooks.internal", "10.0.0.0/8", "::1"])
    inside = FixedResolver("192.168.9.9")
    assert await check_registration(allow, "https://hooks.internal/x", inside)
    assert await check_registration(allow, "http://10.9.8.7/", inside)
    assert await check_registration(allow, "http://[::1]:9/", inside)
    with pytest.raises(Refused):
        await check_registration(allow, "http://192.168.9.9/", inside)


async def test_the_connection_goes_to_the_checked_address_only() -> None:
    """At send time the resolver refuses a name that now answers loopback: no request is made."""
    async with Receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        rebinding = SafeResolver(Guard(), FixedResolver("127.0.0.1"))
        connector = aiohttp.TCPConnector(resolver=rebinding, use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.ClientConnectorError, match="internal address"):
                await session.post(f"http://hooks.example:{port}/hook", data=b"{}")
        assert receiver.received == []


async def test_send_time_check_refuses_an_endpoint_no_longer_allowed(
    client: TestClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    """A stored loopback URL (e.g. allowed by an old allowlist) is refused when sending."""
    async with Receiver() as receiver:

        def insert(conn: Any) -> None:
            conn.execute(
                "INSERT INTO webhooks (url, secret, incidents, events, created_at, created_by)"
                " VALUES (?, 'whsec_dGVzdHRlc3R0ZXN0dGVzdA==', '\"*\"', '[\"entry.created\"]',"
                " '2026-01-01T00:00:00.000Z', '{}')",
                (receiver.url,),
            )

        await client.app[DB].write(insert)
        incident = await create_incident(client, editor)
        await post_entry(client, editor, incident["id"])
        deadline = time.monotonic() + TIMEOUT
        while True:
            response = await client.get("/api/webhooks/1/deliveries", headers=admin)
            [delivery] = (await response.json())["deliveries"]
            if delivery["attempts"] and delivery["attempts"][0]["outcome"] == "retry":
                break
            assert time.monotonic() < deadline, json.dumps(delivery)
            await asyncio.sleep(0.02)
        assert "internal address" in delivery["attempts"][0]["error"]
        assert receiver.received == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/h", "http://[::ffff:127.0.0.1]/h", "http://localhost/h"]
)
async def test_registration_api_refuses_internal_urls(
    client: TestClient, admin: dict[str, str], url: str
) -> None:
    """Without an allowlist, POST /api/webhooks answers 422 naming the url field."""
    response = await client.post("/api/webhooks", json={"url": url}, headers=admin)
    assert response.status == 422
    body = await response.json()
    assert body["field"] == "url"
    assert body["error"] == "url_forbidden_address"
