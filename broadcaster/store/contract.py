"""Declare what a timeline store must do; backends are chosen by configuration.

``Store`` is the timeline's contract: create and read incidents, append
atomically (checking the head and writing the entry, its content and its
checkpoint in one step), read a range, read the head and the latest
checkpoint. ``JobDatabase`` is what both databases offer every store module:
``write(job)`` runs a job in a transaction and returns once it is durable,
``read(job)`` runs one on a connection that sees every committed write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..timeline.model import Actor, Entry, NewEntry
from ..timeline.rules import AppendCheck, AppendHook, Head

T = TypeVar("T")


class JobDatabase(Protocol):
    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, job: Callable[[Any], T]) -> T: ...

    async def read(self, job: Callable[[Any], T]) -> T: ...


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def create_incident(self, fields: dict[str, Any], actor: Actor) -> dict[str, Any]: ...

    async def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    async def incidents(self) -> list[dict[str, Any]]: ...

    async def append(
        self,
        incident_id: str,
        new: NewEntry,
        actor: Actor,
        *,
        checks: tuple[AppendCheck, ...] = (),
        hooks: tuple[AppendHook, ...] = (),
        remote: str | None = None,
    ) -> tuple[Entry, dict[str, Any]]: ...

    async def entries(
        self, incident_id: str, after: int = 0, limit: int | None = None
    ) -> list[Entry]: ...

    async def entry(self, incident_id: str, seq: int) -> Entry | None: ...

    async def head(self, incident_id: str) -> Head | None: ...

    async def checkpoint(self, incident_id: str) -> dict[str, Any] | None: ...
