"""Find each request's client address: the peer, or what a trusted proxy says it is.

With ``BROADCASTER_TRUSTED_PROXIES`` unset the peer address is the client,
whatever forwarding headers say. With it set, a request whose peer is one of
those proxies may name the client in one header (``BROADCASTER_PROXY_HEADER``:
``X-Forwarded-For`` by default, ``Forwarded`` or ``X-Real-IP``). The chain is
walked from the right, past every trusted hop, and the first untrusted
address is the client (all trusted: the left-most). Only the configured
header is read, because a proxy that appends to one of them passes the others
through untouched: reading a second one would let anyone name themselves.
A hop that does not parse as an address ends the walk at the last trusted hop
(the proxy then answers for that request), so garbage never becomes a client
of its own.

The middleware puts the result in ``request.remote`` (``request.clone``, only
for requests that came through a trusted proxy), so every per-client rule
(rate limits, lockouts, live-connection caps, the audit log, SMS callback
trust) sees one and the same address.

aiohttp-remotes was considered: its ``XForwardedFiltered`` never checks the
peer (anyone could name any client) and its strict variants need a fixed hop
count, answering 400 to a direct client or to one that sends its own header;
neither is the contract's rule, so this module does it in a few lines, using
aiohttp's own ``Forwarded`` parser.

``source_of`` groups addresses into the unit a per-client limit counts: one
IPv4 address, or one IPv6 /64 (a single subscriber usually holds a whole /64,
so counting single IPv6 addresses would let one host rotate without end).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(value: str | None) -> Address | None:
    """Return the address in a header hop (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``), or None."""
    if not value:
        return None
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def source_of(address: str | None) -> str:
    """Return the unit per-client limits count: the IPv4 address, or the IPv6 /64."""
    parsed = parse_address(address)
    if parsed is None:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class ClientAddress:
    """Work out the client address of requests that come through trusted proxies."""

    def __init__(self, trusted: Iterable[str], header: str = "x-forwarded-for") -> None:
        self.trusted: tuple[Network, ...] = tuple(ipaddress.ip_network(t) for t in trusted)
        self.header = header

    def is_trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.trusted)

    def hops(self, request: web.BaseRequest) -> list[str]:
        """Return the addresses the configured header names, left (origin) to right."""
        if self.header == "forwarded":
            return [element.get("for") or "" for element in request.forwarded]
        if self.header == "x-real-ip":
            return request.headers.getall("X-Real-IP", [])[-1:]
        joined = ",".join(request.headers.getall("X-Forwarded-For", []))
        return [hop for hop in joined.split(",") if hop.strip()] if joined else []

    def client_of(self, request: web.BaseRequest) -> str | None:
        """Return the client's address (see the module docstring)."""
        peer = parse_address(request.remote)
        if not self.is_trusted(peer):
            return request.remote
        client: Address | None = peer
        for hop in reversed(self.hops(request)):
            address = parse_address(hop)
            if address is None:
                break  # unparseable: the last trusted hop answers for the request
            client = address
            if not self.is_trusted(address):
                break
        return str(client)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        client = self.client_of(request)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
        return await handler(request)


def proxied(request: web.BaseRequest) -> bool:
    """Tell whether a request carries any header a proxy would add to name a client."""
    headers = request.headers
    return any(name in headers for name in ("X-Forwarded-For", "Forwarded", "X-Real-IP"))
