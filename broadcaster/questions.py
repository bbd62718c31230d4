"""Take the public's questions and publish the press office's answers on the timeline.

Anyone may ask (no token): the text is length-checked, passes the same
privacy review as entries (refused with 422 ``disclosure_review`` unless sent
again with ``"mask": true``), and waits as ``pending``; it is never shown
publicly before an editor answers it. Answering appends an ``answer`` entry
quoting ``{"id", "text", "asked_at"}`` (chained, so the quote cannot be
altered later) and marks the question answered in the same transaction; a
dismissal needs a stated reason. Counts of each state and the median time to
answer are public.

Rate limiting is a token bucket per client address, in memory (it resets on
restart), or in Redis when several nodes share one (``broadcaster.ratelimit``,
one bucket per address for all nodes). Behind a reverse proxy every client has
the proxy's address unless the proxy passes the real one to aiohttp, so the
whole proxy would share one bucket.
"""

from __future__ import annotations

import json
import math
import secrets
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .api.common import incident_or_404, json_response, remote_of
from .appkeys import DB, PUBLISHER
from .auth import optional_actor, require
from .clock import now_ts, parse_ts
from .drafts import approval_required, hold
from .errors import Conflict, NotFound, TooManyRequests, Unprocessable
from .fields import Field, check_object
from .jsonbody import read_object
from .model import Entry, NewEntry
from .ratelimit import shared_bucket
from .review import outcome_of, review_hooks, review_text
from .store import questions as questions_store
from .store.timeline import audit_row

MIN_CHARS, MAX_CHARS = 4, 500
MAX_PENDING = 1000
STATUSES = ("pending", "answered", "dismissed")
ASK_FIELDS = (Field("text", "text", required=True, max_len=MAX_CHARS), Field("mask", "bool"))
ANSWER_FIELDS = (
    Field("body", "text", required=True, nullable=False, max_len=20_000),
    Field("sms", "bool", nullable=False),
    Field("mask", "bool", nullable=False),
    Field("acknowledge", "object"),
)
DISMISS_FIELDS = (Field("reason", "text", required=True, nullable=False, max_len=500),)


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


def public_question(row: Mapping[str, Any], *, full: bool) -> dict[str, Any]:
    """Return a question as served; ``full`` adds what only editors see."""
    data = {
        "id": row["id"],
        "incident": row["incident"],
        "text": row["text"],
        "asked_at": row["asked_at"],
        "status": row["status"],
        "answered_at": row["handled_at"] if row["status"] == "answered" else None,
        "answer_seq": row["answer_seq"],
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
    return {**counts, "median_answer_seconds": median}


async def read_question(request: web.Request) -> dict[str, Any]:
    """Read a question as JSON, or as the live page's plain HTML form (no JavaScript needed)."""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return {name: str(value) for name, value in form.items()}
    return await read_object(request)


async def ask(request: web.Request) -> web.Response:
    wait = await request.app[QUESTION_LIMITER].count(remote_of(request) or "unknown")
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
    question_id = "q" + secrets.token_hex(8)

    def job(conn: Any) -> None:
        if questions_store.count_pending(conn, incident["id"]) >= MAX_PENDING:
            raise TooManyRequests(
                "too many questions wait for an answer; try later", code="too_many_pending"
            )
        questions_store.insert(conn, question_id, incident["id"], text, now_ts())

    await request.app[DB].write(job)
    return json_response({"id": question_id, "status": "pending"}, status=202)


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
        return {
            "questions": [public_question(row, full=full) for row in rows],
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
    if await approval_required(request.app, incident["id"]):  # two-person review
        held = await hold(
            request.app, incident["id"], new, actor, outcome=outcome_of(options), remote=remote
        )
        return json_response(held, status=202, headers={"Location": held["url"]})
    entry, _ = await publisher.append(
        incident["id"], new, actor, remote=remote, hooks=review_hooks(options, actor, remote)
    )
    return web.Response(
        text=entry.to_json(),
        status=201,
        content_type="application/json",
        headers={"Location": f"/api/incidents/{incident['id']}/entries/{entry.seq}"},
    )


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
    base = "/api/incidents/{incident}/questions"
    app.router.add_post(base, ask)
    app.router.add_get(base, list_questions)
    app.router.add_post(base + "/{question}/answer", answer)
    app.router.add_post(base + "/{question}/dismiss", dismiss)
