"""Refuse outbound requests to internal addresses (SSRF), at registration and at send time.

A subscriber's webhook URL is chosen by whoever registers it, so without a
guard the service could be made to POST into its own network: loopback,
private ranges, link-local cloud metadata (``169.254.169.254``) and the like.
``Guard`` allows an address only when it is globally routable, after
unwrapping the IPv6 forms that embed an IPv4 address (IPv4-mapped and
-compatible, 6to4, NAT64, Teredo), unless ``BROADCASTER_WEBHOOK_ALLOW``
names it (a host name, an IP address or a CIDR network).

Host names are resolved, every address is checked (one internal address
refuses the name: a rebinding name may answer either), and the connection
goes to the checked address: ``SafeResolver`` is the resolver of the aiohttp
connector, so nothing resolves the name a second time. aiohttp does not call
the resolver for literal IP addresses, hence ``Guard.check_url`` runs before
every request as well. Legacy numeric host forms (``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1``) are refused outright: each tool
reads them differently, so no check of ours could be sure what they mean.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
#: IETF protocol assignments: Python 3.11 calls parts of it global, yet it holds
#: no public service and 192.0.0.192 is a cloud metadata address.
_IETF = ipaddress.ip_network("192.0.0.0/24")
RESOLVE_TIMEOUT = 5.0


class Refused(ValueError):
    """A URL or address is not allowed as an outbound target; ``code`` says why."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address carries inside it (none for plain IPv6)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_internal(ip: IPAddress) -> bool:
    """Tell whether ``ip`` (or an address wrapped in it) is not a public unicast address."""
    for candidate in (ip, *embedded_ipv4(ip)):
        if (
            not candidate.is_global
            or candidate.is_loopback
            or candidate.is_private
            or candidate.is_link_local
            or candidate.is_unspecified
            or candidate.is_multicast
            or candidate.is_reserved
            or (
                isinstance(candidate, ipaddress.IPv4Address)
                and (candidate in _SHARED or candidate in _IETF)
            )
        ):
            return True
    return False


def literal_ip(host: str) -> IPAddress | None:
    """Return ``host`` as an address if it is a canonical IP literal, else ``None``.

    Raises ``Refused`` for the legacy numeric forms ``inet_aton`` still accepts
    and for IPv6 zone ids, which name an interface rather than an address.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "%" in bare:
        raise Refused(f"{host!r} has an IPv6 zone id", "url_forbidden_address")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        socket.inet_aton(bare.rstrip("."))
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    raise Refused(f"{host!r} is a non-canonical IP address form", "url_ambiguous_ip")


class Guard:
    """Decide which outbound targets are allowed; ``allow`` is the operator's exceptions."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            item = item.strip().lower()
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(item.rstrip("."))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def address_allowed(self, ip: IPAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self.networks):
            return True
        return not is_internal(ip)

    def check_url(self, url: str | URL) -> URL:
        """Return the parsed URL if its form and any literal address are allowed.

        Host names are checked later, when ``SafeResolver`` resolves them.
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
            parsed.port  # noqa: B018 - parsing the port is what may fail here
            str(parsed).encode("ascii")  # IDNA-encodes the host: a bad name fails here
        except (ValueError, UnicodeError) as exc:
            raise Refused(f"the URL cannot be parsed: {exc}", "invalid_url") from None
        if parsed.scheme not in ("http", "https"):
            raise Refused("the URL must use http or https", "url_scheme")
        if parsed.user is not None or parsed.password is not None:
            raise Refused("the URL must not carry credentials", "url_credentials")
        host = parsed.raw_host
        if not host:
            raise Refused("the URL has no host", "url_host")
        if any(ord(c) <= 0x20 or c == "\x7f" for c in host):
            raise Refused("the URL's host has control characters or spaces", "invalid_url")
        if self.host_allowed(host):
            return parsed
        ip = literal_ip(host)
        if ip is not None and not self.address_allowed(ip):
            raise Refused(f"{host} is an internal address", "url_forbidden_address")
        return parsed

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Raise ``Refused`` unless every address ``host`` resolved to is allowed."""
        if self.host_allowed(host):
            return
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not self.address_allowed(ip):
                raise Refused(f"{host} resolves to an internal address", "url_forbidden_address")


class SafeResolver(AbstractResolver):
    """Resolve like aiohttp does, then refuse names with any disallowed address.

    ``inner`` is the resolver doing the lookup (aiohttp's threaded one by
    default); tests pass one that answers what a rebinding name would.
    """

    def __init__(self, guard: Guard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        try:
            self.guard.check_addresses(host, [r["host"] for r in results])
        except Refused as exc:
            # aiohttp keeps only errno and strerror of the resolver's error
            raise OSError(errno.EACCES, str(exc)) from exc
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


async def check_registration(guard: Guard, url: str, resolver: AbstractResolver | None) -> URL:
    """Check a URL as it is registered: form, literal address and what its name resolves to."""
    parsed = guard.check_url(url)
    host = parsed.raw_host or ""
    if guard.host_allowed(host) or literal_ip(host) is not None:
        return parsed
    inner = resolver or ThreadedResolver()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            results: list[Any] = await inner.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
    except (OSError, TimeoutError, ValueError) as exc:
        raise Refused(f"{host} does not resolve: {exc or 'timeout'}", "url_unresolvable") from exc
    finally:
        if resolver is None:
            await inner.close()
    guard.check_addresses(host, [r["host"] for r in results])
    return parsed
