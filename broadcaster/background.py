"""Run a coroutine as a background task for the life of a block (a ``cleanup_ctx``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, Any], name: str) -> AsyncIterator[asyncio.Task[Any]]:
    """Start ``coro`` as a task; on leaving the block cancel it and wait until it has stopped.

    Waiting matters: a task still running after its ``cleanup_ctx`` has closed
    the store or the bus would use them after they are gone.
    """
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
