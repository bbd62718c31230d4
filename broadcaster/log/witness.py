"""Witness a transparency log: the server side of C2SP tlog-witness ``add-checkpoint``.

A witness cosigns a log's checkpoint only when it is consistent with the
largest checkpoint it cosigned before for that origin, so a log cannot show
one history to some readers and another (forked, or rolled back) to others
while both carry this witness's cosignature. Answers follow the spec exactly:

- 400 the request does not parse, or its old size exceeds the checkpoint's;
- 404 the origin is not a log this witness was configured with;
- 403 no trusted log signature, or a trusted key's signature fails;
- 409 the old size is not the size last cosigned (body: that size and a
  newline, ``Content-Type: text/x.tlog.size``), so the log retries with it;
- 422 a consistency proof that does not verify, a proof where none is due
  (old size 0, or equal sizes), equal sizes with another root, or a size-0
  checkpoint whose root is not the empty tree's;
- 200 the cosignature line(s).

The check and the update run in one transaction of ``WitnessState``. Every
validly signed checkpoint refused as inconsistent (a fork, a smaller size
than cosigned, a proof that fails) is kept as evidence, with its request.
``GET /`` shows the latest cosigned size per origin, ``GET /evidence`` the
evidence, and ``GET /<sha256 hex of origin>/checkpoint`` the latest cosigned
checkpoint (the spec's monitoring endpoint). Error bodies are plain text, as
the protocol is not the Broadcaster JSON API.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from ..store.witness_state import Cosigned, Evidence, Transaction, WitnessState
from .checkpoint import Checkpoint, open_checkpoint, origin_of
from .cosignature import Cosigner, timestamp_of
from .merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from .note import (
    BadSignature,
    Ed25519Verifier,
    MalformedNote,
    UnverifiedNote,
    append_signatures,
    b64decode,
    b64encode,
    parse_note,
)

MAX_PROOF_LINES = 63
#: A checkpoint with 100 signatures and 63 proof lines fits many times over.
MAX_REQUEST_BYTES = 256 * 1024
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body and its content type."""

    status: int
    text: str
    content_type: str = "text/plain"


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse ``old N``, the proof lines, a blank line and the checkpoint note.

    Raises MalformedNote for anything off-spec (the witness answers 400).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("the request is UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedNote("no blank line before the checkpoint")
    old_line, *proof_lines = head.split("\n")
    number = old_line.removeprefix("old ")
    if number == old_line or not number.isascii() or not number.isdigit():
        raise MalformedNote("the first line is 'old <size>'")
    if number != str(int(number)):
        raise MalformedNote("the old size has leading zeroes")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedNote(f"more than {MAX_PROOF_LINES} proof lines")
    proof = tuple(b64decode(line) for line in proof_lines)
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedNote("a proof line is one base64 SHA-256 hash")
    parse_note(note)
    return AddCheckpoint(int(number), proof, note)


class Witness:
    """Decide ``add-checkpoint`` requests for a set of logs and record the outcome."""

    def __init__(
        self, cosigner: Cosigner, logs: Iterable[Ed25519Verifier], state: WitnessState
    ) -> None:
        self.cosigner = cosigner
        self.state = state
        self.logs: dict[str, list[Ed25519Verifier]] = {}
        for log in logs:
            # A log's key name is its origin (C2SP tlog-checkpoint); several
            # keys per origin let a log rotate keys.
            self.logs.setdefault(log.name, []).append(log)

    def add_checkpoint(self, body: bytes) -> Answer:
        """Return the answer to one request; blocking (runs in a worker thread)."""
        try:
            request = parse_request(body)
        except MalformedNote as exc:
            return Answer(400, f"malformed request: {exc}\n")
        origin = origin_of(request.note)
        verifiers = self.logs.get(origin)
        if not verifiers:
            return Answer(404, "unknown log origin\n")
        try:
            checkpoint, note = open_checkpoint(request.note, verifiers)
        except (BadSignature, UnverifiedNote) as exc:
            return Answer(403, f"{exc}\n")
        except MalformedNote as exc:
            return Answer(400, f"malformed checkpoint: {exc}\n")
        if request.old_size > checkpoint.size:
            return Answer(400, "old size is larger than the checkpoint size\n")
        with self.state.transaction() as txn:
            return self._decide(txn, request, checkpoint, str(note))

    def _decide(
        self, txn: Transaction, request: AddCheckpoint, checkpoint: Checkpoint, note: str
    ) -> Answer:
        latest = txn.latest(checkpoint.origin)
        latest_size = latest.size if latest else 0
        latest_root = latest.root_hash if latest else EMPTY_ROOT

        def keep(reason: str) -> None:
            """Record the refused checkpoint and the request that carried it, as evidence."""
            proof = "".join(b64encode(h) + "\n" for h in request.proof)
            txn.keep(
                Evidence(
                    checkpoint.origin,
                    checkpoint.size,
                    checkpoint.root_hash,
                    reason,
                    f"old {request.old_size}\n{proof}\n{request.note}",
                    latest_size,
                    latest.root_hash if latest else None,
                    int(self.cosigner.clock()),
                )
            )

        def refuse(reason: str, *, evidence: bool = True) -> Answer:
            if evidence:
                keep(reason)
            return Answer(422, reason + "\n")

        if request.old_size != latest_size:
            # A stale client is routine; a smaller tree or another root at the
            # same size, validly signed, may be the log misbehaving.
            if checkpoint.size < latest_size:
                keep("smaller than the checkpoint cosigned last (a rollback?)")
            elif checkpoint.size == latest_size and checkpoint.root_hash != latest_root:
                keep("same size as the checkpoint cosigned last, another root (a fork)")
            return Answer(409, f"{latest_size}\n", SIZE_TYPE)
        if not checkpoint.is_empty_tree_consistent:
            return refuse("a size-0 checkpoint must have the empty tree's root")
        if request.old_size == 0 and request.proof:
            return refuse("no consistency proof is due from size 0", evidence=False)
        if request.old_size == checkpoint.size:
            if checkpoint.root_hash != latest_root:
                return refuse("same size as the checkpoint cosigned last, another root")
            if request.proof:
                return refuse("no consistency proof is due between equal sizes", evidence=False)
        elif request.old_size and not verify_consistency(
            latest_size, checkpoint.size, latest_root, checkpoint.root_hash, request.proof
        ):
            return refuse("the consistency proof does not verify")
        cosignature = self.cosigner.cosign(checkpoint.body)
        txn.save(
            Cosigned(
                checkpoint.origin,
                checkpoint.size,
                checkpoint.root_hash,
                append_signatures(note, [cosignature.line]),
                timestamp_of(cosignature.signature),
            )
        )
        return Answer(200, cosignature.line)

    def status(self) -> dict[str, object]:
        """Return the witness's key and, per configured log, the latest cosigned tree head."""
        latest = {c.origin: c for c in self.state.all_latest()}
        evidence: dict[str, int] = {}
        for item in self.state.evidence():
            evidence[item.origin] = evidence.get(item.origin, 0) + 1
        logs = []
        for origin in sorted(self.logs):
            cosigned = latest.get(origin)
            logs.append(
                {
                    "origin": origin,
                    "size": cosigned.size if cosigned else None,
                    "root_hash": b64encode(cosigned.root_hash) if cosigned else None,
                    "cosigned_at": cosigned.cosigned_at if cosigned else None,
                    "checkpoint": f"/{origin_hash(origin)}/checkpoint",
                    "evidence": evidence.get(origin, 0),
                }
            )
        return {"name": self.cosigner.name, "vkey": self.cosigner.vkey, "logs": logs}


def origin_hash(origin: str) -> str:
    """Return the lowercase hex SHA-256 of an origin, as in the monitoring URL."""
    return hashlib.sha256(origin.encode()).hexdigest()


WITNESS: web.AppKey[Witness] = web.AppKey("witness", Witness)


async def _add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS]
    answer = await asyncio.to_thread(witness.add_checkpoint, await request.read())
    return web.Response(status=answer.status, text=answer.text, content_type=answer.content_type)


async def _status(request: web.Request) -> web.Response:
    witness = request.app[WITNESS]
    return web.json_response(await asyncio.to_thread(witness.status))


async def _evidence(request: web.Request) -> web.Response:
    witness = request.app[WITNESS]
    items = await asyncio.to_thread(witness.state.evidence, request.query.get("origin"))
    return web.json_response(
        {
            "evidence": [
                {
                    "origin": e.origin,
                    "size": e.size,
                    "root_hash": b64encode(e.root_hash),
                    "reason": e.reason,
                    "request": e.request,
                    "latest_size": e.latest_size,
                    "latest_root": b64encode(e.latest_root) if e.latest_root else None,
                    "received_at": e.received_at,
                }
                for e in items
            ]
        }
    )


async def _checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS]
    wanted = request.match_info["origin_hash"]
    origin = next((o for o in witness.logs if origin_hash(o) == wanted), None)
    cosigned = await asyncio.to_thread(witness.state.latest, origin) if origin else None
    if cosigned is None:
        raise web.HTTPNotFound(text="no checkpoint cosigned for this origin\n")
    return web.Response(text=cosigned.note, content_type="text/plain", charset="utf-8")


def create_witness_app(witness: Witness) -> web.Application:
    """Return the witness's aiohttp application; it closes the state on cleanup."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[WITNESS] = witness

    async def close_state(app: web.Application) -> None:
        witness.state.close()

    app.on_cleanup.append(close_state)
    app.router.add_post("/add-checkpoint", _add_checkpoint)
    app.router.add_get("/", _status)
    app.router.add_get("/evidence", _evidence)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", _checkpoint)
    return app
