"""Hold many WebSocket or SSE subscriptions open and time every message: the benchmark's client.

Deliberately lean, so that the benchmark measures servers rather than itself:
one ``asyncio.Protocol`` per connection (no task, no reader object), frames
parsed in place, and no JSON decoding. A message is recognised by the
``bench n=<N> t=<T>`` text the poster put in its body: ``T`` is the poster's
clock just before it sent the message, ``N`` its number. Each connection
counts the distinct messages it got and those it got twice. (Posts overlap,
so ``N`` need not follow the server's seq order; the server's own ordering is
what the test suite checks.) Each connection also keeps the longest time
between two of its benchmark messages: a server pause shows there.

With ``--sse`` the connections are Server-Sent Events streams (``GET`` with
``Accept: text/event-stream``), parsed as lean: events are cut at blank lines,
whatever the transfer encoding, and searched for the same text.

Run one process per core's share of connections::

    python -m bench.wsclient HOST PORT PATH COUNT OUTFILE [--sse]

It prints ``connected OK FAILED`` once every connection has answered, then
waits for a line on stdin, writes its results to ``OUTFILE`` (a JSON header
line, the latencies as native doubles, then the message numbers as native
ints) and prints ``done``.

``FrameProtocol`` and ``upgrade_request`` are also the base of the fault
tests' reconnecting followers (``tests/faults/clients.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from array import array
from typing import Any

PONG = b"\x8a\x80\x00\x00\x00\x00"  # masked with a zero key: payload unchanged
MARK = b"bench n="


class Stats:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.numbers = array("i")
        self.unique = 0
        self.duplicates = 0
        self.closed = 0
        self.gaps: list[int] = []  # per connection, the longest time (ms) between two messages


def upgrade_request(host: str, port: int, path: str) -> bytes:
    """Return a WebSocket upgrade request for ``path`` with a fresh random key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class FrameProtocol(asyncio.Protocol):
    """Speak the client side of one WebSocket connection, parsing frames in place.

    Subclasses get ``on_upgrade(ok)`` once the handshake answer is in (the
    connection is closed when it is not a 101), ``on_data(opcode, buf, start,
    stop)`` for each text, binary or continuation frame (the payload is
    ``buf[start:stop]``; no copy is made unless the subclass slices) and
    ``on_close(code)`` before a server close is answered by closing. Pings get
    a pong. Server frames are never masked, so no unmasking is done; a frame
    split across reads waits in ``buffer`` for the rest.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def on_upgrade(self, ok: bool) -> None:
        pass

    def on_data(self, opcode: int, buf: bytes, start: int, stop: int) -> None:
        pass

    def on_close(self, code: int) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            ok = buf.startswith(b"HTTP/1.1 101")
            self.upgraded = ok
            self.on_upgrade(ok)
            if not ok:
                self.transport.close()  # type: ignore[union-attr]
                return
            buf = buf[end + 4 :]
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            start = pos + head
            pos = start + length
            if opcode <= 2:  # text, or binary (nchan's default for a message)
                self.on_data(opcode, buf, start, pos)
            elif opcode == 9:
                self.transport.write(PONG)  # type: ignore[union-attr]
            elif opcode == 8:
                self.on_close(
                    int.from_bytes(buf[start : start + 2], "big") if length >= 2 else 1005
                )
                self.transport.close()  # type: ignore[union-attr]
        self.buffer = buf[pos:]


class Recorder:
    """Count and time the benchmark messages one connection gets."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.seen = bytearray()  # seen[n] == 1 once message n arrived
        self.previous = 0.0  # when the last benchmark message arrived
        self.gap = 0.0

    def record(self, payload: bytes) -> None:
        at = payload.find(MARK)
        if at < 0:
            return
        received = time.time()
        gap = payload.find(b" t=", at)
        number = int(payload[at + len(MARK) : gap])
        sent = float(payload[gap + 3 : gap + 20])
        stats = self.stats
        seen = self.seen
        if number >= len(seen):
            seen.extend(bytes(number - len(seen) + 64))
        if seen[number]:
            stats.duplicates += 1
        else:
            seen[number] = 1
            stats.unique += 1
        stats.latencies.append(received - sent)
        stats.numbers.append(number)
        if self.previous:
            self.gap = max(self.gap, received - self.previous)
        self.previous = received


class Subscriber(FrameProtocol):
    """One benchmark WebSocket connection; records the benchmark messages it gets."""

    def __init__(self, stats: Stats, request: bytes, opened: asyncio.Future[bool]) -> None:
        super().__init__(request)
        self.stats = stats
        self.opened = opened
        self.recorder = Recorder(stats)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.opened.done():
            self.opened.set_result(False)

    def on_upgrade(self, ok: bool) -> None:
        if not self.opened.done():
            self.opened.set_result(ok)

    def on_data(self, opcode: int, buf: bytes, start: int, stop: int) -> None:
        self.recorder.record(buf[start:stop])


class EventSubscriber(asyncio.Protocol):
    """One benchmark SSE stream; records the benchmark messages it gets."""

    def __init__(self, stats: Stats, request: bytes, opened: asyncio.Future[bool]) -> None:
        self.stats = stats
        self.request = request
        self.opened = opened
        self.recorder = Recorder(stats)
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.opened.done():
            self.opened.set_result(False)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if not self.started:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            self.started = buf.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
            if not self.opened.done():
                self.opened.set_result(self.started)
            if not self.started:
                self.transport.close()  # type: ignore[union-attr]
                return
            buf = buf[end + 4 :]
        pos = 0
        while (end := buf.find(b"\n\n", pos)) >= 0:
            self.recorder.record(buf[pos:end])
            pos = end + 2
        self.buffer = buf[pos:]


def sse_request(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


async def run(host: str, port: int, path: str, count: int, outfile: str, sse: bool) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    sem = asyncio.Semaphore(64)
    protocols: list[Subscriber | EventSubscriber] = []
    kind = EventSubscriber if sse else Subscriber

    async def open_one() -> bool:
        request = (sse_request if sse else upgrade_request)(host, port, path)
        async with sem:
            opened: asyncio.Future[bool] = loop.create_future()
            try:
                _, protocol = await loop.create_connection(
                    lambda: kind(stats, request, opened), host, port
                )
            except OSError:
                return False
            protocols.append(protocol)
            try:
                async with asyncio.timeout(30):
                    return await opened
            except TimeoutError:
                return False

    results = await asyncio.gather(*(open_one() for _ in range(count)))
    ok = sum(results)
    stats.closed = 0  # count only what closes from now on
    print(f"connected {ok} {count - ok}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    stats.gaps = [round(protocol.recorder.gap * 1000) for protocol in protocols]
    write_results(outfile, ok, stats)
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.abort()
    print("done", flush=True)


def write_results(path: str, connections: int, stats: Stats) -> None:
    header: dict[str, Any] = {
        "connections": connections,
        "unique": stats.unique,
        "duplicates": stats.duplicates,
        "closed": stats.closed,
        "samples": len(stats.latencies),
        "gaps": stats.gaps,
    }
    with open(path, "wb") as out:
        out.write(json.dumps(header).encode() + b"\n")
        stats.latencies.tofile(out)
        stats.numbers.tofile(out)


def read_results(path: str) -> tuple[dict[str, Any], array, array]:
    """Return the header, latencies and message numbers a client process wrote."""
    with open(path, "rb") as source:
        header = json.loads(source.readline())
        latencies, numbers = array("d"), array("i")
        latencies.fromfile(source, header["samples"])
        numbers.fromfile(source, header["samples"])
    return header, latencies, numbers


if __name__ == "__main__":
    host, port, path, count, outfile = sys.argv[1:6]
    asyncio.run(run(host, int(port), path, int(count), outfile, "--sse" in sys.argv[6:]))
