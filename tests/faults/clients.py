"""Lean WebSocket followers for storms of thousands: one ``asyncio.Protocol`` each, no reader task.

A ``Follower`` keeps one subscription to ``/ws/incidents/{id}`` alive: when
its connection ends (server restart, 4008, reset) it reconnects after a
random pause with ``after=`` the last seq it got, as the contract asks of
clients. It records every entry's seq, in arrival order, across connections,
so a test can assert the whole range arrived once each. Frames are parsed in
place and the seq is read without decoding the JSON (the publisher writes
``{"type":"entry","entry":{"incident": ..., "seq": N, ...}}``). The frame
parsing is the benchmark client's (``bench/wsclient.py``), so both stay lean.
"""

from __future__ import annotations

import asyncio
import random
from array import array

from bench.wsclient import FrameProtocol, upgrade_request

CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # close 1000, masked with a zero key
SEQ = b'"seq": '
ENTRY = b'{"type":"entry"'


class Connection(FrameProtocol):
    """One WebSocket connection; hands entry seqs and the close code to its follower."""

    def __init__(self, follower: Follower) -> None:
        super().__init__(follower.handshake())
        self.follower = follower
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def on_upgrade(self, ok: bool) -> None:
        if ok:
            self.follower.connects += 1
        else:
            self.follower.refused += 1

    def on_data(self, opcode: int, buf: bytes, start: int, stop: int) -> None:
        if opcode == 1 and buf.startswith(ENTRY, start):
            at = buf.index(SEQ, start) + len(SEQ)
            end = at
            while 48 <= buf[end] <= 57:
                end += 1
            self.follower.got(int(buf[at:end]))

    def on_close(self, code: int) -> None:
        self.follower.close_codes.append(code)


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
        path = f"/ws/incidents/{self.incident}?after={self.last}"
        return upgrade_request("127.0.0.1", self.port, path)

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
                # A jittered pause before retrying, as the contract asks of clients.
                await asyncio.sleep(random.uniform(0.05, self.pause))
                continue
            await self.connection.ended
            if not self.stopped:
                # The same pause before reconnecting: 2,000 at once is the storm under test.
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
