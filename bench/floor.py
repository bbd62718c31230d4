"""The CPython floor of live fan-out: the least any Python server can do per viewer.

No framework, no store, nothing durable, no ping: asyncio protocols that take
WebSocket upgrades (``GET /sub``) and Server-Sent Events streams (``GET
/sse``), and a publisher location (``POST /pub``) whose body goes out as one
frame (WebSocket) or one chunk (SSE) to every socket with ``transport.write``,
in one loop, before the answer. ``bench/fanout.py --targets
broadcaster,floor,nchan`` measures it beside the other two: what nchan does
better than this is out of reach of a server whose fan-out is a CPython loop
over sockets on one event loop, however lean, and what Broadcaster adds to it
is Broadcaster's own cost.

Usage: ``python bench/floor.py PORT``
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def ws_frame(payload: bytes) -> bytes:
    """Return ``payload`` as one unmasked WebSocket text frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


def sse_chunk(payload: bytes) -> bytes:
    """Return ``payload`` as one SSE event in one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class Server:
    def __init__(self) -> None:
        self.ws: set[asyncio.Transport] = set()
        self.sse: set[asyncio.Transport] = set()

    def publish(self, payload: bytes) -> None:
        frame = ws_frame(payload)
        for transport in self.ws:
            transport.write(frame)
        chunk = sse_chunk(payload)
        for transport in self.sse:
            transport.write(chunk)


class Connection(asyncio.Protocol):
    """One client: a subscriber once its request is read, or a publisher's keep-alive."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.subscribed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.ws.discard(self.transport)
        self.server.sse.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.subscribed:
            return  # pongs and the like: nothing to do
        self.buffer += data
        while not self.subscribed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            request, *lines = head.split("\r\n")
            fields = (line.partition(":") for line in lines)
            headers = {k.strip().lower(): v.strip() for k, _, v in fields}
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.answer(request.split(" ")[:2], headers, body)

    def answer(self, request: list[str], headers: dict[str, str], body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        method, path = request
        if method == "POST" and path == "/pub":
            self.server.publish(body)
            transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        elif path.startswith("/sub") and "sec-websocket-key" in headers:
            key = headers["sec-websocket-key"].encode()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.subscribed = True
            self.server.ws.add(transport)
        elif path.startswith("/sse"):
            transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            self.subscribed = True
            self.server.sse.add(transport)
        else:
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def main(port: int) -> None:
    server = Server()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: Connection(server), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    print(f"floor listening on {port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
