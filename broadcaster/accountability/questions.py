"""Take the public's questions and publish the press office's answers on the timeline.

Anyone may ask (no token): the text is length-checked, passes the same
privacy review as entries (refused with 422 ``disclosure_review`` unless sent
again with ``"mask": true``), and waits as ``pending``; it is never shown
publicly before an editor answers it. Answering appends an ``answer`` entry
quoting ``{"id", "text", "asked_at"}`` (chained, so the quote cannot be
altered later) and marks the question answered in the same transaction; a
dismissal needs a stated reason. Counts of each state and the median time to
answer are public.

Intake, so that a resident can always reach the queue (docs/reliability.md,
"The question queue"). Every rule counts per source: the client address of
``broadcaster.web.clientaddr`` (behind a trusted proxy, the real client), one
IPv4 address or one IPv6 /64.

1. Rate: a token bucket per source (``QUESTION_LIMITER``, 5 at once, then one
   per 2 minutes): 429 ``rate_limited``.
2. Folding: a question whose text matches a pending one of the incident
   once case, width, spaces, punctuation and symbols are ignored is folded
   into it (202 with that question's id, ``"folded": true``); its ``asks``
   count grows and it takes no slot.
3. A source with nothing pending in the incident is always queued: no flood
   from other addresses can shut out a resident who has asked nothing yet.
4. A source that already has questions pending may have at most
   ``PER_SOURCE_PENDING`` of them; beyond its first, a question is also
   turned away while the incident holds ``MAX_PENDING`` or more, or when the
   incident's intake bucket (``INTAKE_LIMITER``, ``INTAKE_BURST`` at once,
   then one per ``INTAKE_SECONDS``, shared between nodes) is empty: 429
   ``too_many_pending``.

The queue is therefore bounded by ``MAX_PENDING`` plus one question per
source network that asks. Questions folded or turned away are counted per
incident (``folded``, ``turned_away``) and published with the other counts.
Editors dismiss pending questions one by one or in bulk (by ids, or all
pending ones whose text contains a phrase), always with a reason; each bulk
dismissal is one audit record. The source is kept only while a question is
pending, for these rules, and forgotten when it is answered or dismissed.

Rate limits live in memory (they reset on restart), or in Redis when several
nodes share one (``broadcaster.web.ratelimit``, one limit for all nodes).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import statistics
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ..api.common import entry_created, incident_or_404, json_response, remote_of
from ..appkeys import DB, PUBLISHER
from ..auth.tokens import optional_actor, require
from ..clock import now_ts, parse_ts
from ..errors import Conflict, NotFound, TooManyRequests, Unprocessable
from ..privacy.review import outcome_of, review_hooks, review_text
from ..store import questions as questions_store
from ..store.timeline import audit_row
from ..timeline.drafts import append_unless_held, hold
from ..timeline.model import Entry, NewEntry
from ..web.clientaddr import source_of
from ..web.fields import Field, check_object
from ..web.jsonbody import read_object
from ..web.ratelimit import shared_bucket

MIN_CHARS, MAX_CHARS = 4, 500
MAX_PENDING = 1000
PER_SOURCE_PENDING = 3
INTAKE_BURST, INTAKE_SECONDS = 30, 2.0
MAX_BULK = 1000
MIN_MATCH = 2  # two Chinese characters already make a word
STATUSES = ("pending", "answered", "dismissed")
ASK_FIELDS = (Field("text", "text", required=True, max_len=MAX_CHARS), Field("mask", "bool"))
ANSWER_FIELDS = (
    Field("body", "text", required=True, nullable=False, max_len=20_000),
    Field("sms", "bool", nullable=False),
    Field("mask", "bool", nullable=False),
    Field("acknowledge", "object"),
)
DISMISS_FIELDS = (Field("reason", "text", required=True, nullable=False, max_len=500),)
BULK_FIELDS = (
    *DISMISS_FIELDS,
    Field("ids", "list", nullable=False),
    Field("matching", "line", nullable=False, max_len=MAX_CHARS),
)


class TokenBucket:
    """Allow ``capacity`` requests per key at once, refilled at one per ``per_seconds``."""

    def __init__(
        self,
        capacity: int = 5,
        per_seconds: float = 120.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.per_seconds, self.max_keys = capacity, per_seconds, max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def check(self, key: str) -> float:
        """Return the seconds ``key`` must wait, spending nothing (``ratelimit.Limiter``)."""
        moment = self.clock()
        tokens, last = self._buckets.get(key, (float(self.capacity), moment))
        tokens = min(self.capacity, tokens + (moment - last) / self.per_seconds)
        return 0.0 if tokens >= 1 else (1 - tokens) * self.per_seconds

    async def count(self, key: str) -> float:
        """Spend one token of ``key`` (``ratelimit.Limiter``); see ``take``."""
        return self.take(key)

    def take(self, key: str) -> float:
        """Spend one token of ``key``; return 0, or the seconds to wait when none is left."""
        moment = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.capacity), moment))
        tokens = min(self.capacity, tokens + (moment - last) / self.per_seconds)
        wait = 0.0 if tokens >= 1 else (1 - tokens) * self.per_seconds
        self._buckets[key] = (tokens - 1 if not wait else tokens, moment)
        while len(self._buckets) > self.max_keys:  # forget the longest-idle clients first
            self._buckets.popitem(last=False)
        return wait


QUESTION_LIMITER = web.AppKey("question_limiter", TokenBucket)
INTAKE_LIMITER = web.AppKey("question_intake_limiter", TokenBucket)


def fingerprint(text: str) -> str:
    """Return what near-duplicate questions share: letters and digits, case and width folded."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(c for c in folded if unicodedata.category(c)[0] in "LMN")
    return hashlib.sha256(kept.encode()).hexdigest()[:32]


def public_question(row: Mapping[str, Any], *, full: bool, asks: int = 1) -> dict[str, Any]:
    """Return a question as served; ``full`` adds what only editors see."""
    data = {
        "id": row["id"],
        "incident": row["incident"],
        "text": row["text"],
        "asked_at": row["asked_at"],
        "status": row["status"],
        "answered_at": row["handled_at"] if row["status"] == "answered" else None,
        "answer_seq": row["answer_seq"],
        "asks": asks,
    }
    if full:
        data["handled_at"] = row["handled_at"]
        data["handled_by"] = json.loads(row["handled_by"]) if row["handled_by"] else None
        data["reason"] = row["reason"]
    return data


def question_stats(conn: Any, incident: str) -> dict[str, Any]:
    """Return public counts per status and the median answer time in seconds."""
    counts = dict.fromkeys(STATUSES, 0) | questions_store.counts(conn, incident)
    waits = [
        (parse_ts(done) - parse_ts(asked)).total_seconds()
        for asked, done in questions_store.answer_times(conn, incident)
    ]
    median = round(statistics.median(waits), 3) if waits else None
    return {**counts, **questions_store.set_aside(conn, incident), "median_answer_seconds": median}


async def read_question(request: web.Request) -> dict[str, Any]:
    """Read a question as JSON, or as the live page's plain HTML form (no JavaScript needed)."""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return {name: str(value) for name, value in form.items()}
    return await read_object(request)


async def ask(request: web.Request) -> web.Response:
    source = source_of(remote_of(request))
    wait = await request.app[QUESTION_LIMITER].count(source)
    if wait:
        error = TooManyRequests("too many questions from this address; try later")
        error.headers["Retry-After"] = str(math.ceil(wait))
        raise error
    incident = await incident_or_404(request)
    fields = check_object(await read_question(request), ASK_FIELDS)
    if len(fields["text"].strip()) < MIN_CHARS:
        raise Unprocessable(
            f"a question needs at least {MIN_CHARS} characters", code="too_short", field="text"
        )
    text = review_text(fields["text"], mask=bool(fields.get("mask")))
    if incident["status"] != "active":
        raise Conflict(
            "this incident is over; it takes no more questions", code="incident_resolved"
        )
    incident_id, mark = incident["id"], fingerprint(text)
    db = request.app[DB]
    mine = await db.read(lambda conn: questions_store.pending_from(conn, incident_id, source))
    # A source's first pending question never waits on the incident's intake (rule 3).
    busy = mine > 0 and await request.app[INTAKE_LIMITER].count(incident_id) > 0
    question_id = "q" + secrets.token_hex(8)

    def job(conn: Any) -> tuple[str, bool] | None:
        same = questions_store.pending_like(conn, incident_id, mark)
        if same is not None:
            questions_store.fold(conn, same, incident_id)
            return same, True
        held = questions_store.pending_from(conn, incident_id, source)
        if held and (
            busy
            or held >= PER_SOURCE_PENDING
            or questions_store.count_pending(conn, incident_id) >= MAX_PENDING
        ):
            questions_store.turned_away(conn, incident_id)
            return None
        questions_store.insert(conn, question_id, incident_id, text, now_ts(), source, mark)
        return question_id, False

    queued = await db.write(job)
    if queued is None:
        raise TooManyRequests(
            "this address has questions waiting already, or too many questions wait; try later",
            code="too_many_pending",
        )
    body: dict[str, Any] = {"id": queued[0], "status": "pending"}
    if queued[1]:
        body["folded"] = True
    return json_response(body, status=202)


async def list_questions(request: web.Request) -> web.Response:
    incident = await incident_or_404(request)
    full = (await optional_actor(request)) is not None
    wanted = request.query.get("status") or ("answered" if not full else None)
    if wanted not in (None, *STATUSES) or (not full and wanted != "answered"):
        raise Unprocessable(
            "'status' must be answered (or, for editors, pending or dismissed)",
            code="invalid_query",
            field="status",
        )

    def job(conn: Any) -> dict[str, Any]:
        rows = questions_store.listed(conn, incident["id"], wanted)
        asks = questions_store.asks(conn, [row["id"] for row in rows])
        return {
            "questions": [
                public_question(row, full=full, asks=asks.get(row["id"], 1)) for row in rows
            ],
            "counts": question_stats(conn, incident["id"]),
        }

    return json_response(await request.app[DB].read(job))


def _pending(conn: Any, incident: str, question_id: str) -> Mapping[str, Any]:
    row = questions_store.one(conn, incident, question_id)
    if row is None:
        raise NotFound(f"no question {question_id!r} here", code="question_not_found")
    if row["status"] != "pending":
        raise Conflict(f"the question is already {row['status']}", code="question_not_pending")
    return row


async def answer(request: web.Request) -> web.Response:
    actor = await require(request, "editor")
    incident = await incident_or_404(request)
    fields = check_object(await read_object(request), ANSWER_FIELDS)
    qid = request.match_info["question"]
    row = await request.app[DB].read(lambda c: _pending(c, incident["id"], qid))
    options: dict[str, Any] = {k: fields.pop(k) for k in ("mask", "acknowledge") if k in fields}
    # The question is quoted in the body, not in the chained record, so that a
    # redaction of the answer withdraws the quoted text too.
    fields["body"] = quote(row["text"]) + "\n\n" + fields["body"]
    new = NewEntry(kind="answer", question={"id": row["id"], "asked_at": row["asked_at"]}, **fields)
    publisher = request.app[PUBLISHER]
    new = publisher.review(new, options, actor)
    remote = remote_of(request)
    hooks = review_hooks(options, actor, remote)
    entry = await append_unless_held(
        request.app, incident["id"], new, actor, remote=remote, hooks=hooks
    )
    if entry is not None:
        return entry_created(entry)
    held = await hold(
        request.app, incident["id"], new, actor, outcome=outcome_of(options), remote=remote
    )
    return json_response(held, status=202, headers={"Location": held["url"]})


async def dismiss(request: web.Request) -> web.Response:
    actor = await require(request, "editor")
    incident = await incident_or_404(request)
    fields = check_object(await read_object(request), DISMISS_FIELDS)
    if not fields["reason"].strip():
        raise Unprocessable("say why in 'reason'", code="reason_required", field="reason")
    qid = request.match_info["question"]

    def job(conn: Any) -> dict[str, Any]:
        _pending(conn, incident["id"], qid)
        by = json.dumps(actor.public(), ensure_ascii=False)
        row = questions_store.dismiss(conn, qid, now_ts(), by, fields["reason"])
        audit_row(
            conn, actor, "question.dismiss", f"{incident['id']}?{qid}",
            {"reason": fields["reason"]}, remote_of(request),
        )  # fmt: skip
        return public_question(row, full=True)

    return json_response(await request.app[DB].write(job))


async def dismiss_many(request: web.Request) -> web.Response:
    """Dismiss pending questions in bulk: listed ``ids``, or all whose text has ``matching``."""
    actor = await require(request, "editor")
    incident = await incident_or_404(request)
    fields = check_object(await read_object(request), BULK_FIELDS)
    reason = fields["reason"].strip()
    if not reason:
        raise Unprocessable("say why in 'reason'", code="reason_required", field="reason")
    ids, phrase = fields.get("ids"), fields.get("matching")
    if (ids is None) == (phrase is None):
        raise Unprocessable("give 'ids' or 'matching', not both", code="missing_field", field="ids")
    if ids is not None and (
        len(ids) > MAX_BULK or not all(isinstance(i, str) and len(i) <= 40 for i in ids)
    ):
        raise Unprocessable(
            f"'ids' must be at most {MAX_BULK} question ids", code="invalid_value", field="ids"
        )
    if phrase is not None and len(phrase) < MIN_MATCH:
        raise Unprocessable(
            f"'matching' needs at least {MIN_MATCH} characters", code="too_short", field="matching"
        )
    wanted = set(ids or ())
    needle = (phrase or "").casefold()

    def job(conn: Any) -> list[str]:
        rows = questions_store.pending_rows(conn, incident["id"])
        chosen = [
            row["id"]
            for row in rows
            if (row["id"] in wanted if ids is not None else needle in row["text"].casefold())
        ][:MAX_BULK]
        by, at = json.dumps(actor.public(), ensure_ascii=False), now_ts()
        for qid in chosen:
            questions_store.dismiss(conn, qid, at, by, reason)
        audit_row(
            conn, actor, "question.dismiss_bulk", incident["id"],
            {"reason": reason, "count": len(chosen), "ids": chosen}, remote_of(request),
        )  # fmt: skip
        return chosen

    chosen = await request.app[DB].write(job)
    return json_response({"dismissed": len(chosen), "ids": chosen})


def quote(text: str) -> str:
    """Return ``text`` as a markdown block quote, escaped so it renders as plain text."""
    escaped = "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|~" else c for c in text)
    return "\n".join("> " + line for line in escaped.splitlines() or [""])


def answer_still_pending(conn: Any, incident: Any, new: NewEntry) -> None:
    """Refuse an answer (or an answer draft) to a question that is no longer pending."""
    if new.kind == "answer" and new.question:
        _pending(conn, incident["id"], new.question["id"])


def mark_answered(conn: Any, _incident: Any, entry: Entry) -> None:
    """Mark the question answered in the transaction that appends its answer."""
    question = entry.record["question"]
    if entry.record["kind"] != "answer" or not question:
        return
    by = json.dumps(entry.record["author"], ensure_ascii=False)
    questions_store.mark_answered(conn, question["id"], entry.record["posted_at"], by, entry.seq)


def withdraw_redacted_question(conn: Any, _incident: Any, entry: Entry) -> None:
    """When an answer is redacted, withdraw its question's text from the public list too."""
    if entry.record["kind"] == "redaction":
        questions_store.erase_answered_text(conn, entry.incident, entry.record["redacts"])


def setup(app: web.Application) -> None:
    app[PUBLISHER].checks.append(answer_still_pending)
    app[PUBLISHER].hooks.extend((mark_answered, withdraw_redacted_question))
    app[QUESTION_LIMITER] = shared_bucket(app, "questions", TokenBucket())
    intake = TokenBucket(INTAKE_BURST, INTAKE_SECONDS)
    app[INTAKE_LIMITER] = shared_bucket(app, "question-intake", intake)
    base = "/api/incidents/{incident}/questions"
    app.router.add_post(base, ask)
    app.router.add_get(base, list_questions)
    app.router.add_post(base + "/dismiss", dismiss_many)
    app.router.add_post(base + "/{question}/answer", answer)
    app.router.add_post(base + "/{question}/dismiss", dismiss)
