"""Publish the site's transparency log under ``/log`` and have witnesses cosign it.

Leaves are written by the store with what they log (``broadcaster.store.log``);
this module does the rest, off the append path:

- the *sequencer* (one task per node) signs a C2SP checkpoint for the log's
  size every ``TICK`` seconds when the size changed. Any node may sign any
  size: the note is the same bytes (no time in it, Ed25519 is deterministic),
  and the store keeps the first;
- the *submitter* (one task per node, when ``BROADCASTER_WITNESSES`` lists
  witnesses) takes the newest signed checkpoint, sends it with a consistency
  proof to every witness not backing off, in parallel, keeps the verified
  cosignature lines, then publishes the checkpoint. A witness that fails or
  times out (``WITNESS_TIMEOUT``) backs off exponentially up to
  ``MAX_BACKOFF`` and is left out of rounds meanwhile. Nothing here is awaited
  by a post: a witness down delays only the cosignatures;
- ``GET /log/checkpoint`` serves the largest published checkpoint followed by
  the cosignatures collected for exactly that tree head; ``/log/vkey`` the
  site's verifier key; ``/log/tile/...`` hash tiles and entry bundles (gzip),
  immutable. ``keys_document`` is ``/.well-known/broadcaster-keys.json``: every key
  with its period.

Publishing after the witnesses answered is what lets a reader find a
checkpoint carrying every live witness's cosignature: the newest signed size
would usually have none yet while entries are being appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from .appkeys import DB, SETTINGS, SIGNER
from .background import background
from .backoff import backoff_delay
from .errors import NotFound, Unavailable
from .log import tiles
from .log.checkpoint import Checkpoint, sign_checkpoint
from .log.client import WitnessClient, WitnessEndpoint, WitnessError
from .log.merkle import consistency_proof
from .log.note import SIG_ED25519, Ed25519Signer, append_signatures, encode_vkey
from .log.tiles import StoredHashReader
from .signing import Signer, unb64url
from .store import log as log_store
from .store.contract import JobDatabase

log = logging.getLogger(__name__)
TICK = 0.2
WITNESS_TIMEOUT = 3.0
MAX_BACKOFF = 60.0
IMMUTABLE = "public, max-age=31536000, immutable"
#: Tiles kept in memory per node (a full entry bundle is ~15 KiB gzipped, a hash tile 8 KiB).
TILE_CACHE = 1024
CORS = {"Access-Control-Allow-Origin": "*"}


def note_signer(signer: Signer, origin: str) -> Ed25519Signer:
    """Return the site key as a signed-note key named by the log's origin."""
    return Ed25519Signer(origin, signer.private)


def vkey_of(origin: str, public_raw: bytes) -> str:
    return encode_vkey(origin, SIG_ED25519, public_raw)


class Sequencer:
    """Sign a checkpoint for each new log size (one per node; duplicates are harmless)."""

    def __init__(self, db: JobDatabase, signer: Signer, origin: str, *, publish: bool) -> None:
        self.db = db
        self.note_signer = note_signer(signer, origin)
        self.origin = origin
        self.publish = publish
        self.key_id = signer.key_id
        self.retired = False

    async def sign_now(self) -> log_store.SignedCheckpoint | None:
        """Sign the log's current size if no checkpoint has it yet; return the newest one."""

        def read(conn: Any) -> tuple[int, bytes | None, str | None]:
            size = log_store.size(conn)
            current = [k.key_id for k in log_store.key_rows(conn) if k.valid_until is None]
            newest = log_store.latest_checkpoint(conn, published=False)
            if newest is not None and newest.size >= size:
                return size, None, current[-1] if current else None
            return size, log_store.root(conn, size), current[-1] if current else None

        size, root, current = await self.db.read(read)
        if current != self.key_id:  # `broadcaster key rotate` retired this node's key
            if not self.retired:
                log.error("this node's key %s is no longer the site's: restart it", self.key_id)
            self.retired = True
        elif root is not None:
            note = sign_checkpoint(Checkpoint(self.origin, size, root), [self.note_signer])
            await self.db.write(
                lambda c: log_store.insert_checkpoint(c, size, root, note, published=self.publish)
            )
        return await self.db.read(lambda c: log_store.latest_checkpoint(c, published=False))

    async def run(self) -> None:
        while True:
            try:
                await self.sign_now()
            except Exception as exc:  # the store is down: try again next tick
                log.warning("signing the log checkpoint failed: %s", exc)
            await asyncio.sleep(TICK)


class Submitter:
    """Ask every witness to cosign the newest checkpoint, then publish it."""

    def __init__(self, db: JobDatabase, endpoints: Sequence[WitnessEndpoint]) -> None:
        self.db = db
        self.endpoints = list(endpoints)
        self.clients: list[WitnessClient] = []
        self.failures: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.done_size = -1

    async def start(self, session: aiohttp.ClientSession) -> None:
        known = await self.db.read(log_store.cosigned_sizes)
        self.clients = [
            WitnessClient(
                e,
                session,
                timeout=WITNESS_TIMEOUT,
                known_size=known.get(e.verifier.name, 0),
            )
            for e in self.endpoints
        ]

    async def _proof(self, old: int, new: int) -> list[bytes]:
        def job(conn: Any) -> list[bytes]:
            reader = StoredHashReader(log_store.stored_reader(conn))
            return consistency_proof(reader, old, new)

        return await self.db.read(job)

    async def _submit(self, client: WitnessClient, size: int, note: str) -> None:
        name = client.endpoint.verifier.name
        try:
            line = await client.add_checkpoint(note, self._proof)
        except WitnessError as exc:
            if client.known_size > size:  # another node already had a larger tree cosigned
                return
            failures = self.failures.get(name, 0) + 1
            self.failures[name] = failures
            delay = backoff_delay(failures, first=WITNESS_TIMEOUT, cap=MAX_BACKOFF)
            self.retry_at[name] = time.monotonic() + delay
            level = logging.ERROR if exc.status in (403, 409, 422) else logging.WARNING
            log.log(level, "witness %s refused or failed size %d: %s", name, size, exc)
            return
        self.failures.pop(name, None)
        self.retry_at.pop(name, None)
        await self.db.write(lambda c: log_store.add_cosignature(c, size, name, line))

    async def round(self) -> int | None:
        """Run one round for the newest signed checkpoint; return its size (None if nothing new)."""
        newest = await self.db.read(lambda c: log_store.latest_checkpoint(c, published=False))
        if newest is None or newest.size == self.done_size:
            return None
        now = time.monotonic()
        due = [c for c in self.clients if self.retry_at.get(c.endpoint.verifier.name, 0.0) <= now]
        await asyncio.gather(*(self._submit(c, newest.size, newest.note) for c in due))
        await self.db.write(lambda c: log_store.publish(c, newest.size))
        self.done_size = newest.size
        return newest.size

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await self.start(session)
            while True:
                try:
                    await self.round()
                except Exception as exc:  # the store is down: try again next tick
                    log.warning("submitting the log checkpoint failed: %s", exc)
                await asyncio.sleep(TICK)


def endpoints_of(specs: Sequence[str]) -> list[WitnessEndpoint]:
    return [WitnessEndpoint.parse(spec) for spec in specs]


async def _tasks(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    endpoints = endpoints_of(settings.witnesses)
    sequencer = Sequencer(app[DB], app[SIGNER], settings.origin, publish=not endpoints)
    # The first checkpoint is signed before the node serves: /log/checkpoint never 503s on it.
    await sequencer.sign_now()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(background(sequencer.run(), "log-sequencer"))
        if endpoints:
            submitter = Submitter(app[DB], endpoints)
            await stack.enter_async_context(background(submitter.run(), "log-submitter"))
        yield


async def get_checkpoint(request: web.Request) -> web.Response:
    def job(conn: Any) -> tuple[str, list[str]] | None:
        found = log_store.latest_checkpoint(conn, published=True)
        found = found or log_store.latest_checkpoint(conn, published=False)
        if found is None:
            return None
        return found.note, log_store.cosignatures(conn, found.size)

    found = await request.app[DB].read(job)
    if found is None:
        error = Unavailable("the log has no signed checkpoint yet", code="log_not_ready")
        error.headers["Retry-After"] = "1"
        raise error
    note, lines = found
    return web.Response(
        text=append_signatures(note, lines),
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", **CORS},
    )


async def get_vkey(request: web.Request) -> web.Response:
    origin = request.app[SETTINGS].origin
    return web.Response(
        text=vkey_of(origin, request.app[SIGNER].public_raw) + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers=CORS,
    )


class TileCache:
    """Keep the most recently served tiles' bytes: a tile never changes once it exists."""

    def __init__(self, size: int = TILE_CACHE) -> None:
        self.size = size
        self.tiles: OrderedDict[str, bytes] = OrderedDict()

    def get(self, path: str) -> bytes | None:
        found = self.tiles.get(path)
        if found is not None:
            self.tiles.move_to_end(path)
        return found

    def put(self, path: str, body: bytes) -> None:
        self.tiles[path] = body
        if len(self.tiles) > self.size:
            self.tiles.popitem(last=False)


TILES = web.AppKey("log_tiles", TileCache)


async def get_tile(request: web.Request) -> web.Response:
    try:
        tile = tiles.parse_tile_path("tile/" + request.match_info["tail"])
    except ValueError:
        raise NotFound("no such tile", code="tile_not_found") from None
    headers = {"Cache-Control": IMMUTABLE, **CORS}
    if tile.level is None:
        headers["Content-Encoding"] = "gzip"
    cache = request.app[TILES]
    body = cache.get(tile.path)
    if body is None:
        body = await _tile_bytes(request.app[DB], tile)
        cache.put(tile.path, body)
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


async def _tile_bytes(db: JobDatabase, tile: tiles.Tile) -> bytes:
    start = tile.index * tiles.TILE_WIDTH
    if tile.level is None:
        found = await db.read(lambda c: log_store.leaves(c, start, start + tile.width))
        if len(found) != tile.width:
            raise NotFound("the log has no such entry bundle yet", code="tile_not_found")
        return gzip.compress(tiles.encode_entry_bundle(found), mtime=0)
    try:
        return await db.read(lambda c: tiles.hash_tile(tile, log_store.stored_reader(c)))
    except IndexError:
        raise NotFound("the log has no such tile yet", code="tile_not_found") from None


def keys_document(origin: str, rows: Sequence[log_store.KeyRow]) -> dict[str, Any]:
    """Return every key the site has used, with its period and its log vkey."""
    keys = []
    for row in rows:
        keys.append(
            {
                "key_id": row.key_id,
                "algorithm": "Ed25519",
                "public_key": row.public_key,
                "valid_from": row.valid_from,
                "valid_until": row.valid_until,
                "announced_at_leaf": row.announced_at,
                "vkey": vkey_of(origin, unb64url(row.public_key)),
            }
        )
    current = [k["vkey"] for k in keys if k["valid_until"] is None]
    return {"keys": keys, "log": {"origin": origin, "vkey": current[-1] if current else None}}


def setup(app: web.Application) -> None:
    app[TILES] = TileCache()
    app.router.add_get("/log/checkpoint", get_checkpoint)
    app.router.add_get("/log/vkey", get_vkey)
    app.router.add_get("/log/tile/{tail:.+}", get_tile)
    app.cleanup_ctx.append(_tasks)
