"""Declare what a timeline store must do; backends are chosen by configuration.

The contract is narrow on purpose, so that a second backend (Redis) only has
to get a handful of verbs right: create and read incidents, append atomically
(checking the head and writing the entry, its content and its checkpoint in
one step), read a range, read the head and the latest checkpoint.
"""

from __future__ import annotations

from typing import Any, Protocol

from .model import Actor, Entry, NewEntry
from .timeline import AppendCheck, AppendHook, Head


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
