"""Lay a Merkle tree out as C2SP tlog-tiles: hash tiles, entry bundles and their paths.

A log keeps one *stored hash* per complete subtree at the tile levels: at
tile level 0 every leaf hash, at tile level L the hash of each full tile of
level L-1 (a complete subtree of ``256**L`` leaves). Those are exactly the
contents of the tiles it serves, so a store needs no other hash: any other
node is folded from at most 128 contiguous stored hashes of one tile
(``StoredHashReader``). A tree of n leaves keeps about n * 256/255 hashes.

Paths are the spec's: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``
with ``N`` in 3-digit groups (``x001/x234/067``). Parsing accepts only the
canonical spelling, so one tile has one URL and caches cannot be split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .merkle import HASH_SIZE, node_hash, root_of, tree_root

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF

#: ``read_stored(tile_level, start, end)`` -> the stored hashes ``[start, end)`` of that level.
StoredHashes = Callable[[int, int, int], Sequence[bytes]]

_INDEX = re.compile(r"(?:x\d{3}/)*\d{3}")
_WIDTH = re.compile(r"[1-9]\d{0,2}")
_LEVEL = re.compile(r"0|[1-9]\d?")


@dataclass(frozen=True)
class Tile:
    """Name one hash tile (``level`` >= 0) or entry bundle (``level`` None) and its width."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """Return the path under the log's prefix, e.g. ``tile/1/x001/002.p/17``."""
        kind = "entries" if self.level is None else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"


def encode_index(index: int) -> str:
    """Return ``index`` as zero-padded 3-digit path elements, all but the last prefixed ``x``."""
    if index < 0:
        raise ValueError("a tile index is never negative")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """Return the tile named by ``tile/...`` (the path after the log prefix).

    ValueError unless the path is the canonical spelling of a tile.
    """
    parts = path.split("/", 2)
    if len(parts) != 3 or parts[0] != "tile":
        raise ValueError(f"not a tile path: {path!r}")
    kind, rest = parts[1], parts[2]
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, width_text = rest.partition(".p/")
        if not _WIDTH.fullmatch(width_text) or not 1 <= int(width_text) < TILE_WIDTH:
            raise ValueError(f"bad partial tile width in {path!r}")
        width = int(width_text)
    if not _INDEX.fullmatch(rest):
        raise ValueError(f"bad tile index in {path!r}")
    index = int(rest.replace("x", "").replace("/", ""))
    if encode_index(index) != rest:
        raise ValueError(f"tile index not in canonical form in {path!r}")
    if kind == "entries":
        return Tile(None, index, width)
    if not _LEVEL.fullmatch(kind) or int(kind) > MAX_LEVEL:
        raise ValueError(f"bad tile level in {path!r}")
    return Tile(int(kind), index, width)


def stored_count(level: int, size: int) -> int:
    """Return how many stored hashes tile level ``level`` has in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level)


def tile_for(level: int, position: int, size: int) -> Tile:
    """Return the tile holding stored hash ``position`` of ``level`` in a tree of ``size``."""
    count = stored_count(level, size)
    if not 0 <= position < count:
        raise IndexError(f"level {level} has no stored hash {position} at size {size}")
    index = position // TILE_WIDTH
    full = count // TILE_WIDTH
    return Tile(level, index, TILE_WIDTH if index < full else count % TILE_WIDTH)


def tiles_for_size(size: int) -> Iterator[Tile]:
    """Yield every hash tile of a tree of ``size`` leaves, level by level, full ones first.

    Entry bundles are the level-0 tiles with ``level`` None. A tree of 70,000
    leaves has 273 full and one partial tile (width 112) at level 0, one full
    and one partial (17) at level 1 and one partial (1) at level 2.
    """
    level = 0
    while (count := stored_count(level, size)) and level <= MAX_LEVEL:
        for index in range(count // TILE_WIDTH):
            yield Tile(level, index)
        if count % TILE_WIDTH:
            yield Tile(level, count // TILE_WIDTH, count % TILE_WIDTH)
        level += 1


def tiles_added(old_size: int, new_size: int) -> list[Tile]:
    """Return the hash tiles that exist at ``new_size`` but not at ``old_size``."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot grow from {old_size} to {new_size}")
    added = []
    level = 0
    while (count := stored_count(level, new_size)) and level <= MAX_LEVEL:
        old_count = stored_count(level, old_size)
        first = old_count // TILE_WIDTH
        if old_count < count:
            for index in range(first, count // TILE_WIDTH + 1):
                width = min(TILE_WIDTH, count - index * TILE_WIDTH)
                if width:
                    added.append(Tile(level, index, width))
        level += 1
    return added


def full_tile_hash(hashes: Sequence[bytes]) -> bytes:
    """Return the stored hash one level up for a full tile: the MTH of its 256 hashes."""
    if len(hashes) != TILE_WIDTH:
        raise ValueError("only a full tile is hashed into the level above")
    return root_of(hashes)


def stored_hashes_for_append(
    old_size: int, new_leaf_hashes: Sequence[bytes], read_stored: StoredHashes
) -> list[tuple[int, int, bytes]]:
    """Return the ``(tile level, position, hash)`` rows a store adds when leaves are appended.

    ``read_stored`` answers the rows already stored (for the tree of
    ``old_size``); the rows computed here are looked up first, so a caller can
    run this inside the transaction that appends the leaves and insert the
    result as is.
    """
    rows = [(0, old_size + i, h) for i, h in enumerate(new_leaf_hashes)]
    new_size = old_size + len(new_leaf_hashes)
    fresh: dict[int, dict[int, bytes]] = {0: {pos: h for _, pos, h in rows}}
    level = 1
    while stored_count(level, new_size) > stored_count(level, old_size):
        below = fresh[level - 1]
        fresh[level] = {}
        for pos in range(stored_count(level, old_size), stored_count(level, new_size)):
            start = pos * TILE_WIDTH
            missing = [p for p in range(start, start + TILE_WIDTH) if p not in below]
            old = list(read_stored(level - 1, missing[0], missing[-1] + 1)) if missing else []
            known = dict(zip(missing, old, strict=True))
            known.update(below)
            hashes = [known[p] for p in range(start, start + TILE_WIDTH)]
            fresh[level][pos] = full_tile_hash(hashes)
            rows.append((level, pos, fresh[level][pos]))
        level += 1
    return rows


def hash_tile(tile: Tile, read_stored: StoredHashes) -> bytes:
    """Return the bytes of hash tile ``tile``: its stored hashes, concatenated."""
    if tile.level is None:
        raise ValueError("an entry bundle is not a hash tile")
    start = tile.index * TILE_WIDTH
    hashes = read_stored(tile.level, start, start + tile.width)
    if len(hashes) != tile.width:
        raise IndexError(f"{tile.path}: the store has {len(hashes)} of {tile.width} hashes")
    return b"".join(hashes)


def hash_tile_from_leaves(tile: Tile, leaf_hashes: Sequence[bytes]) -> bytes:
    """Return hash tile ``tile`` computed from the leaf hashes alone (the spec's definition)."""
    if tile.level is None:
        raise ValueError("an entry bundle is not a hash tile")
    span = TILE_WIDTH**tile.level
    out = []
    for i in range(tile.width):
        first = (tile.index * TILE_WIDTH + i) * span
        chunk = leaf_hashes[first : first + span]
        if len(chunk) != span:
            raise IndexError(f"{tile.path} needs leaves up to {first + span}")
        out.append(root_of(chunk))
    return b"".join(out)


def parse_hash_tile(data: bytes, width: int = TILE_WIDTH) -> list[bytes]:
    """Split a hash tile into its hashes; ValueError unless it holds exactly ``width`` of them."""
    if len(data) != width * HASH_SIZE:
        raise ValueError(f"a tile of width {width} has {width * HASH_SIZE} bytes, not {len(data)}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Return an entry bundle: each entry prefixed by its length as a big-endian uint16."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise ValueError("an entry bundle holds 1 to 256 entries")
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit a uint16 length")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """Return the entries of a bundle; ValueError on a truncated or trailing byte."""
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("entry bundle ends inside a length prefix")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + length > len(data):
            raise ValueError("entry bundle ends inside an entry")
        entries.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise ValueError("an entry bundle holds 1 to 256 entries")
    return entries


class StoredHashReader:
    """Read complete subtrees from stored tile-level hashes, one store call per node.

    A node at Merkle level ``8L + k`` is folded from ``2**k`` (at most 128)
    contiguous stored hashes of tile level ``L``, all in one tile; so a root or
    a proof for a tree of any size costs O(log n) calls to ``read_stored``.
    """

    def __init__(self, read_stored: StoredHashes) -> None:
        self._read_stored = read_stored

    def read(self, level: int, index: int) -> bytes:
        tile_level, k = divmod(level, TILE_HEIGHT)
        start = index << k
        end = start + (1 << k)
        hashes = list(self._read_stored(tile_level, start, end))
        if len(hashes) != end - start:
            raise IndexError(f"the store lacks level {tile_level} hashes [{start}, {end})")
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]


def tile_reader(size: int, fetch_tile: Callable[[Tile], bytes]) -> StoredHashReader:
    """Return a reader over the tiles of a tree of ``size``, as a client fetching them would.

    ``fetch_tile`` returns a tile's bytes (for example over HTTP); each tile is
    fetched once, checked for its width, and kept while the reader lives.
    """
    fetched: dict[Tile, list[bytes]] = {}

    def read_stored(level: int, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        for position in range(start, end):
            tile = tile_for(level, position, size)
            if tile not in fetched:
                fetched[tile] = parse_hash_tile(fetch_tile(tile), tile.width)
            out.append(fetched[tile][position % TILE_WIDTH])
        return out

    return StoredHashReader(read_stored)


def root_from_tiles(size: int, fetch_tile: Callable[[Tile], bytes]) -> bytes:
    """Return the root hash of the tree of ``size`` leaves computed from its tiles."""
    return tree_root(tile_reader(size, fetch_tile), size)
