"""Tests for ``broadcaster.bus.listen_forever``: decoded messages, skipping, resuming."""

from __future__ import annotations

import asyncio
import logging

from broadcaster.background import background
from broadcaster.bus import MemoryBus, listen_forever
from broadcaster.bus_message import BusMessage, EntryMessage, Resubscribed, encode
from tests.conftest import TIMEOUT

FRAME = '{"type":"entry","entry":{"incident":"a","seq":%d,"hash":"h"}}'


def entry_message(seq: int) -> EntryMessage:
    return EntryMessage("a", seq, "h", FRAME % seq, 1.0)


class Handler:
    """Collect what ``listen_forever`` hands over; fail on demand."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.got: asyncio.Queue[BusMessage] = asyncio.Queue()
        self.fail_on = fail_on

    async def __call__(self, message: BusMessage) -> None:
        if isinstance(message, EntryMessage) and message.seq == self.fail_on:
            self.fail_on = None
            raise RuntimeError("the handler broke")
        self.got.put_nowait(message)

    async def take(self, count: int) -> list[BusMessage]:
        async with asyncio.timeout(TIMEOUT):
            return [await self.got.get() for _ in range(count)]


async def test_messages_arrive_decoded_and_malformed_ones_are_skipped(caplog):
    """A listener gets typed messages in order; a malformed one is logged and skipped."""
    bus, handle, listening = MemoryBus(), Handler(), asyncio.Event()
    async with background(listen_forever(bus, handle, name="test", listening=listening), "t"):
        await asyncio.wait_for(listening.wait(), TIMEOUT)
        await bus.publish(*encode(entry_message(1)))
        await bus.publish("incident:a", "not json\n{}")
        await bus.publish("elsewhere", "")
        await bus.publish(*encode(Resubscribed()))
        await bus.publish(*encode(entry_message(2)))
        assert await handle.take(3) == [entry_message(1), Resubscribed(), entry_message(2)]
    skipped = [r for r in caplog.records if "test skipped a bus message" in r.getMessage()]
    assert len(skipped) == 2 and all(r.levelno == logging.WARNING for r in skipped)


async def test_after_a_failure_the_listener_resumes_with_a_resubscribed(caplog):
    """When handling fails, the loop listens again and first says messages may be lost."""
    caplog.set_level(logging.ERROR)
    bus, handle, listening = MemoryBus(), Handler(fail_on=1), asyncio.Event()
    async with background(listen_forever(bus, handle, name="test", listening=listening), "t"):
        await asyncio.wait_for(listening.wait(), TIMEOUT)
        await bus.publish(*encode(entry_message(1)))
        assert await handle.take(1) == [Resubscribed()]
        assert listening.is_set()
        await bus.publish(*encode(entry_message(2)))
        assert await handle.take(1) == [entry_message(2)]
    assert any("test lost the bus" in r.getMessage() for r in caplog.records)
    assert not listening.is_set()  # cleared once the loop stopped
