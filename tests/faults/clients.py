"""Lean WebSocket followers for storms of thousands: one ``asyncio.Protocol`` each, no reader task.

A ``Follower`` keeps one subscription to ``/ws/incidents/{id}`` alive: when
its connection ends (server restart, 4008, reset) it reconnects after a
random pause with ``after=`` the last seq it got, as the contract asks of
clients. It records every entry's seq, in arrival order, across connections,
so a test can assert the whole range arrived once each. Frames are parsed in
place and the seq is read without decoding the JSON (the publisher writes
``{"type":"entry","entry":{"incident": ..., "seq": N, ...}}``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from array import array

PONG = b"\x8a\x80\x00\x00\x00\x00"  # masked with a zero key, as a client must
CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # close 1000, masked with a zero key
SEQ = b'"seq": '
ENTRY = b'{"type":"entry"'


class Connection(asyncio.Protocol):
    """One WebSocket connection; hands entry seqs and the close code to its follower."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.follower.handshake())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.follower.refused += 1
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            self.follower.connects += 1
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
            if opcode == 1 and buf.startswith(ENTRY, start):
                at = buf.index(SEQ, start) + len(SEQ)
                stop = at
                while 48 <= buf[stop] <= 57:
                    stop += 1
                self.follower.got(int(buf[at:stop]))
            elif opcode == 9:
                self.transport.write(PONG)  # type: ignore[union-attr]
            elif opcode == 8:
                code = int.from_bytes(buf[start : start + 2], "big") if length >= 2 else 1005
                self.follower.close_codes.append(code)
                self.transport.close()  # type: ignore[union-attr]
        self.buffer = buf[pos:]


class Follower:
    """Follow one incident until stopped, reconnecting with ``after=`` the last seq."""

    def __init__(self, port: int, incident: str, pause: float = 0.5, after: int = 0) -> None:
        self.port = port
        self.incident = incident
        self.after = after
        self.pause = pause
        self.seqs = array("i")
        self.connects = 0
        self.refused = 0
        self.close_codes: list[int] = []
        self.stopped = False
        self.connection: Connection | None = None

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else self.after

    def got(self, seq: int) -> None:
        self.seqs.append(seq)

    def handshake(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET /ws/incidents/{self.incident}?after={self.last} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def run(self, gate: asyncio.Semaphore) -> None:
        """Stay subscribed until ``stop``; ``gate`` bounds connection attempts in flight."""
        loop = asyncio.get_running_loop()
        while not self.stopped:
            try:
                async with gate:
                    _, self.connection = await loop.create_connection(
                        lambda: Connection(self), "127.0.0.1", self.port
                    )
            except OSError:
                await asyncio.sleep(random.uniform(0.05, self.pause))
                continue
            await self.connection.ended
            if not self.stopped:
                await asyncio.sleep(random.uniform(0.0, self.pause))

    def stop(self) -> None:
        self.stopped = True
        connection = self.connection
        if connection is not None and connection.transport is not None:
            if connection.upgraded:
                connection.transport.write(CLOSE)
            connection.transport.close()


def gapless(follower: Follower, head: int) -> bool:
    """Tell whether ``follower`` got exactly seqs after..head, once each, in order."""
    expected = range(follower.after + 1, head + 1)
    return len(follower.seqs) == len(expected) and list(follower.seqs) == list(expected)
