"""Keep incidents and their timelines, on SQLite or PostgreSQL.

Appends run as write jobs (``broadcaster.store.sqlite`` and ``.postgres``):
reading the head and writing ``seq + 1`` happen in one transaction that no
other append can interleave with (SQLite's single writer; on PostgreSQL the
write lock of every group plus ``FOR UPDATE`` on the incident's row), so
``seq`` is gapless and the chain cannot fork. The entry, its content, its
signed checkpoint, the incident's new head, its leaf in the site's
transparency log (``broadcaster.store.log``), the audit row and whatever the
registered hooks write (deliveries, search index) commit together; an
incident's creation commits with its seq-0 leaf the same way.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..clock import format_ts, now, parse_ts
from ..errors import ConfigError, Conflict, NotFound, Unavailable
from ..log import chain
from ..log.records import creation_record
from ..log.signing import Signer, b64url
from ..timeline import markdown
from ..timeline.model import STATE_FIELDS, Actor, Entry, NewEntry
from ..timeline.rules import (
    AppendCheck,
    AppendHook,
    Head,
    build_entry,
    redaction_notice,
    state_changes,
)
from . import areas as areas_store
from . import log as log_store
from .pg_conn import dialect_of
from .sqlite import Database

if TYPE_CHECKING:
    from .postgres import PgDatabase

#: Reads an entry with its content and redaction state; ``html`` is not stored
#: but rendered from the hashed body on read (cached), so what pages show is
#: always what ``verify`` checks.
ENTRY_SELECT = (
    "SELECT e.record, e.hash, c.salt, c.body, r.basis, r.posted_at, r.department,"
    " r.redaction_seq"
    " FROM entries e"
    " LEFT JOIN contents c ON c.content_hash = json_extract(e.record, '$.content_hash')"
    " LEFT JOIN redactions r ON r.incident = e.incident AND r.seq = e.seq"
)
#: The same on PostgreSQL, where entries keep ``content_hash`` in a column of its own.
PG_ENTRY_SELECT = ENTRY_SELECT.replace("json_extract(e.record, '$.content_hash')", "e.content_hash")


def entry_select(conn: Any) -> str:
    """Return the entry-reading SELECT for the connection's dialect."""
    return PG_ENTRY_SELECT if dialect_of(conn) == "postgresql" else ENTRY_SELECT


def no_limit(conn: Any) -> int | None:
    """Return the ``LIMIT ?`` value meaning "no limit" in the connection's dialect."""
    return None if dialect_of(conn) == "postgresql" else -1


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
#: Incident columns a status entry may change (``pinned`` holds JSON).
STATE_COLUMNS = STATE_FIELDS
#: The state an incident was created with, kept so any entry's state can be replayed.
INITIAL_STATE = ("severity", "advice", "summary", "area", "update_interval_minutes")
_RECORD_KEYS = frozenset(chain.HASHED_FIELDS)


def audit_row(
    conn: Any,
    actor: Actor | None,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    remote: str | None = None,
) -> None:
    """Record a write in the audit log, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO audit (at, actor, department, role, remote, action, target, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            format_ts(now()),
            actor.name if actor else None,
            actor.department if actor else None,
            actor.role if actor else None,
            remote,
            action,
            target,
            json.dumps(detail, ensure_ascii=False) if detail else None,
        ),
    )


def incident_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return an incident as the API serves it."""
    interval = row["update_interval_minutes"]
    due = None
    if interval and row["status"] == "active":
        since = parse_ts(row["last_posted_at"] or row["started_at"])
        due = format_ts(since + timedelta(minutes=interval))
    return {
        "id": row["id"],
        "code": row["code"],
        "title": row["title"],
        "summary": row["summary"],
        "advice": row["advice"],
        "severity": row["severity"],
        "area": row["area"],
        "areas": json.loads(row["areas"]),
        "status": row["status"],
        "started_at": row["started_at"],
        "created_at": row["created_at"],
        "created_by": json.loads(row["created_by"]),
        "update_interval_minutes": interval,
        "next_update_due": due,
        "last_update_at": row["last_posted_at"],
        "require_approval": bool(row["require_approval"]),
        "pinned": json.loads(row["pinned"]) if row["pinned"] else [],
        "head": {"seq": row["head_seq"], "hash": row["head_hash"]},
    }


class TimelineStore:
    """The ``Store`` over either database; other modules reach their tables through ``db``."""

    def __init__(self, db: Database | PgDatabase, signer: Signer) -> None:
        self.db = db
        self.signer = signer

    async def open(self) -> None:
        """Open the store, refuse a key that is not the site's current one, build a missing log."""
        await self.db.open()
        public = b64url(self.signer.public_raw)

        def prepare(conn: Any) -> None:
            log_store.prepare(conn, self.signer.key_id, public, latest_key_id(conn))

        try:
            await self.db.write(prepare)
        except ConfigError:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> bool:
        """Tell whether the store takes writes (a PostgreSQL standby in recovery does not)."""

        def job(conn: Any) -> bool:
            if dialect_of(conn) == "postgresql":
                return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            return bool(conn.execute("SELECT 1").fetchone()[0] == 1)

        return await self.db.read(job)

    async def create_incident(
        self,
        fields: dict[str, Any],
        actor: Actor,
        remote: str | None = None,
        hooks: tuple[Callable[[Any, dict[str, Any]], None], ...] = (),
    ) -> dict[str, Any]:
        """Create an incident; each of ``hooks`` runs in the same transaction with it."""

        def job(conn: Any) -> dict[str, Any]:
            code = fields.get("code") or self.free_code(conn)
            created_at = format_ts(now())
            incident_id = fields.get("id") or self.free_id(conn, code, created_at)
            if conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone():
                raise Conflict(f"incident id {incident_id!r} is taken", code="id_taken", field="id")
            if conn.execute("SELECT 1 FROM incidents WHERE code = ?", (code,)).fetchone():
                raise Conflict(f"SMS code {code!r} is taken", code="code_taken", field="code")
            initial = {name: fields.get(name) for name in INITIAL_STATE}
            conn.execute(
                "INSERT INTO incidents (id, code, title, summary, advice, severity, area,"
                " started_at, created_at, created_by, update_interval_minutes, require_approval,"
                " head_hash, initial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    incident_id,
                    code,
                    fields["title"],
                    fields.get("summary") or "",
                    fields.get("advice"),
                    fields["severity"],
                    fields.get("area"),
                    fields.get("started_at") or created_at,
                    created_at,
                    json.dumps(actor.public(), ensure_ascii=False),
                    fields.get("update_interval_minutes"),
                    int(bool(fields.get("require_approval"))),
                    chain.genesis_hash(incident_id),
                    json.dumps(initial, ensure_ascii=False),
                ),
            )
            areas_store.attach(conn, incident_id, fields.get("areas") or ())
            audit_row(
                conn, actor, "incident.create", incident_id, {"title": fields["title"]}, remote
            )
            row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            record = creation_record(incident_id, {**row, "created_by": actor.public()})
            log_store.log_creation(conn, incident_id, record)
            incident = {**incident_dict(row), "creation": log_store.creation(conn, incident_id)}
            for hook in hooks:
                hook(conn, incident)
            return incident

        return await self.db.write(job)

    @staticmethod
    def free_code(conn: Any) -> str:
        """Return an SMS code no incident uses."""
        for length in (3, 4, 4, 5, 6, 8):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
            if not conn.execute("SELECT 1 FROM incidents WHERE code = ?", (code,)).fetchone():
                return code
        raise Conflict("could not find a free SMS code", code="code_exhausted")

    @staticmethod
    def free_id(conn: Any, code: str, created_at: str) -> str:
        """Return a free incident id made of the date and the code."""
        base = created_at[:10].replace("-", "") + "-" + code.lower()
        candidate, n = base, 1
        while conn.execute("SELECT 1 FROM incidents WHERE id = ?", (candidate,)).fetchone():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        def job(conn: Any) -> dict[str, Any] | None:
            row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            return incident_dict(row) if row else None

        return await self.db.read(job)

    async def incidents(self) -> list[dict[str, Any]]:
        def job(conn: Any) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT * FROM incidents ORDER BY status = 'resolved',"
                " COALESCE(last_posted_at, created_at) DESC, created_at DESC"
            ).fetchall()
            return [incident_dict(row) for row in rows]

        return await self.db.read(job)

    async def append(
        self,
        incident_id: str,
        new: NewEntry,
        actor: Actor,
        *,
        checks: tuple[AppendCheck, ...] = (),
        hooks: tuple[AppendHook, ...] = (),
        remote: str | None = None,
    ) -> tuple[Entry, dict[str, Any]]:
        def job(conn: Any) -> tuple[Entry, dict[str, Any]]:
            return self.append_in(conn, incident_id, new, actor, checks, hooks, remote)

        return await self.db.write(job)

    def append_in(
        self,
        conn: Any,
        incident_id: str,
        new: NewEntry,
        actor: Actor,
        checks: tuple[AppendCheck, ...] = (),
        hooks: tuple[AppendHook, ...] = (),
        remote: str | None = None,
    ) -> tuple[Entry, dict[str, Any]]:
        """Append inside an open transaction (for callers that write more alongside)."""
        row = conn.execute(
            "SELECT * FROM incidents WHERE id = ?" + for_update(conn), (incident_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no incident {incident_id!r}", code="incident_not_found")
        incident = incident_dict(row)
        head = Head(row["head_seq"], row["head_hash"])
        for check in checks:
            check(conn, incident, new)
        posted_at = format_ts(now())
        entry = build_entry(incident, head, new, actor, posted_at)
        conn.execute(
            "INSERT INTO contents (content_hash, salt, body) VALUES (?, ?, ?)",
            (entry.record["content_hash"], entry.salt, entry.body),
        )
        values = [incident_id, entry.seq, new.kind, json.dumps(entry.record, ensure_ascii=False)]
        if dialect_of(conn) == "postgresql":
            conn.execute(
                "INSERT INTO entries (incident, seq, kind, record, hash, content_hash)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*values, entry.hash, entry.record["content_hash"]),
            )
        else:
            conn.execute(
                "INSERT INTO entries (incident, seq, kind, record, hash) VALUES (?, ?, ?, ?, ?)",
                (*values, entry.hash),
            )
        state = {name: row[name] for name in STATE_COLUMNS}
        for name, value in state_changes(new).items():
            state[name] = json.dumps(value) if name == "pinned" else value
        conn.execute(
            "UPDATE incidents SET head_seq = ?, head_hash = ?, last_posted_at = ?, "
            + ", ".join(f"{name} = ?" for name in STATE_COLUMNS)
            + " WHERE id = ?",
            (entry.seq, entry.hash, posted_at, *state.values(), incident_id),
        )
        checkpoint = self.signer.sign(incident_id, entry.seq, entry.hash, posted_at)
        conn.execute(
            "INSERT INTO checkpoints (incident, seq, record) VALUES (?, ?, ?)",
            (incident_id, entry.seq, json.dumps(checkpoint)),
        )
        log_store.log_entry(conn, incident_id, entry.seq, entry.hash)
        audit_row(conn, actor, f"entry.{new.kind}", f"{incident_id}#{entry.seq}", None, remote)
        for hook in hooks:
            hook(conn, incident, entry)
        return entry, checkpoint

    async def entries(
        self, incident_id: str, after: int = 0, limit: int | None = None
    ) -> list[Entry]:
        def job(conn: Any) -> list[Entry]:
            return read_entries(conn, incident_id, after, limit)

        return await self.db.read(job)

    async def entry(self, incident_id: str, seq: int) -> Entry | None:
        found = await self.db.read(lambda c: read_entries(c, incident_id, seq - 1, 1))
        return found[0] if found and found[0].seq == seq else None

    async def head(self, incident_id: str) -> Head | None:
        def job(conn: Any) -> Head | None:
            row = conn.execute(
                "SELECT head_seq, head_hash FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            return Head(row[0], row[1]) if row else None

        return await self.db.read(job)

    async def checkpoint(self, incident_id: str) -> dict[str, Any] | None:
        return await self.db.read(lambda c: read_checkpoint(c, incident_id))


def latest_key_id(conn: Any) -> str | None:
    """Return the key that signed the most recent checkpoint, if there is one."""
    row = conn.execute(
        "SELECT c.record FROM incidents i JOIN checkpoints c"
        " ON c.incident = i.id AND c.seq = i.head_seq"
        " ORDER BY i.last_posted_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    try:
        return str(json.loads(row[0])["key_id"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged checkpoint is refused where it is served


def for_update(conn: Any) -> str:
    """Return ``" FOR UPDATE"`` on PostgreSQL (lock the row to the transaction), else ``""``."""
    return " FOR UPDATE" if dialect_of(conn) == "postgresql" else ""


def read_entries(
    conn: Any, incident_id: str, after: int = 0, limit: int | None = None
) -> list[Entry]:
    """Read entries ``seq > after`` in order, joining content and redaction state."""
    rows = conn.execute(
        entry_select(conn) + " WHERE e.incident = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
        (incident_id, after, no_limit(conn) if limit is None else limit),
    ).fetchall()
    return with_corrections(conn, [entry_from_row(row) for row in rows])


def corrections_after(conn: Any, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[int]]:
    """Return ``{(incident, seq): [correction seqs]}`` of the corrections posted after ``keys``.

    One query per incident, reading only the corrections posted after the
    oldest entry asked for (a correction always comes after what it corrects).
    The result may name entries older than those asked for.
    """
    oldest: dict[str, int] = {}
    for incident_id, seq in keys:
        oldest[incident_id] = min(seq, oldest.get(incident_id, seq))
    found: dict[tuple[str, int], list[int]] = {}
    for incident_id, seq in oldest.items():
        rows = conn.execute(
            "SELECT seq, record FROM entries WHERE incident = ? AND seq > ?"
            " AND kind = 'correction' ORDER BY seq",
            (incident_id, seq),
        ).fetchall()
        for row in rows:
            corrects = json.loads(row["record"]).get("corrects")
            found.setdefault((incident_id, corrects), []).append(row["seq"])
    return found


def with_corrections(conn: Any, entries: list[Entry]) -> list[Entry]:
    """Return ``entries`` with ``corrected_by`` filled: the corrections that name each one."""
    found = corrections_after(conn, [(e.incident, e.seq) for e in entries])
    if not found:
        return entries
    return [
        replace(e, corrected_by=tuple(found[key])) if (key := (e.incident, e.seq)) in found else e
        for e in entries
    ]


def read_checkpoint(conn: Any, incident_id: str) -> dict[str, Any] | None:
    """Return the latest signed checkpoint; a damaged one is refused, never served."""
    row = conn.execute(
        "SELECT record FROM checkpoints WHERE incident = ? ORDER BY seq DESC LIMIT 1",
        (incident_id,),
    ).fetchone()
    if row is None:
        return None
    try:
        checkpoint = json.loads(row[0])
    except ValueError:
        checkpoint = None
    if not isinstance(checkpoint, dict):
        raise Unavailable("the stored checkpoint is damaged", code="timeline_damaged")
    return checkpoint


def entry_from_row(row: Mapping[str, Any]) -> Entry:
    """Return the entry of a joined row; a damaged stored record is refused, never served."""
    try:
        record = json.loads(row["record"])
    except ValueError:
        record = None
    # A record edited on disk (a key renamed, a member dropped) must not be served
    # "repaired": answering 503 makes every reader and ``verify`` notice.
    if not isinstance(record, dict) or record.keys() != _RECORD_KEYS:
        raise Unavailable("a stored timeline record is damaged", code="timeline_damaged")
    if row["body"] is not None and row["basis"] is None:
        return Entry(record, row["hash"], row["body"], row["salt"], markdown.render(row["body"]))
    redaction = None
    if row["basis"] is not None:
        redaction = {
            "basis": row["basis"],
            "posted_at": row["posted_at"],
            "department": row["department"],
            "seq": row["redaction_seq"],
        }
        notice = redaction_notice(row["basis"], row["posted_at"], row["department"])
    else:
        notice = '<p class="redaction-notice">此内容已删除。</p>'
    return Entry(record, row["hash"], "", None, notice, redacted=True, redaction=redaction)
