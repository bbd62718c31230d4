"""Read the audit log: who wrote what, when and from where, newest first.

Rows are written by ``timeline.audit_row`` inside the transaction of the
write they record; the table refuses UPDATE and DELETE on both backends
(triggers). Filters compare with ``substr`` rather than LIKE, so that ``_``
or ``%`` in an action or incident id is never a wildcard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def records(
    conn: Any,
    *,
    action: str | None = None,
    action_prefix: str | None = None,
    incident: str | None = None,
    actor: str | None = None,
    before: int | None = None,
    limit: int,
) -> list[Mapping[str, Any]]:
    """Return at most ``limit`` audit rows matching every filter given, newest first.

    ``incident`` matches the incident itself, its entries (``ID#seq``) and its
    drafts (``ID/drafts/...``); ``before`` is an id, for paging backwards.
    """
    where: list[str] = []
    params: list[Any] = []
    if action is not None:
        where.append("action = ?")
        params.append(action)
    if action_prefix is not None:
        where.append("substr(action, 1, ?) = ?")
        params.extend([len(action_prefix), action_prefix])
    if incident is not None:
        where.append("(target = ? OR substr(target, 1, ?) = ? OR substr(target, 1, ?) = ?)")
        params.extend(
            [incident, len(incident) + 1, incident + "#", len(incident) + 1, incident + "/"]
        )
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if before is not None:
        where.append("id < ?")
        params.append(before)
    clause = " WHERE " + " AND ".join(where) if where else ""
    return list(
        conn.execute(
            f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
    )
