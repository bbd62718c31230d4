"""C2SP tlog-tiles layout of ``broadcaster.log.tiles``: paths, tile sets, contents, bundles."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.log.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
)
from broadcaster.log.tiles import (
    StoredHashReader,
    Tile,
    encode_entry_bundle,
    encode_index,
    hash_tile,
    hash_tile_from_leaves,
    parse_entry_bundle,
    parse_hash_tile,
    parse_tile_path,
    root_from_tiles,
    stored_hashes_for_append,
    tiles_added,
    tiles_for_size,
)

SIZE = 70_000
LEAF_HASHES = [leaf_hash(i.to_bytes(4, "big")) for i in range(SIZE)]


class Store:
    """Stored hashes by (tile level, position), as a database table would keep them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], bytes] = {}
        self.calls = 0

    def read(self, level: int, start: int, end: int) -> list[bytes]:
        self.calls += 1
        return [self.rows[(level, p)] for p in range(start, end) if (level, p) in self.rows]

    def append(self, size: int, leaf_hashes: Sequence[bytes]) -> None:
        for level, position, digest in stored_hashes_for_append(size, leaf_hashes, self.read):
            assert (level, position) not in self.rows
            self.rows[(level, position)] = digest


@pytest.fixture(scope="module")
def store() -> Store:
    """A store fed the 70,000 leaves in random-sized batches."""
    store, size, rng = Store(), 0, random.Random(6962)
    while size < SIZE:
        batch = LEAF_HASHES[size : size + rng.choice([1, 3, 255, 256, 700, 5000])]
        store.append(size, batch)
        size += len(batch)
    return store


def test_index_encoding_is_the_specs() -> None:
    """Indexes are 3-digit groups with an x on all but the last."""
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert encode_index(1000) == "x001/000"
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(1, 2, 17).path == "tile/1/002.p/17"
    assert Tile(None, 5, 3).path == "tile/entries/005.p/3"


@given(st.integers(0, 10**12), st.integers(0, 63), st.integers(1, 256), st.booleans())
def test_tile_paths_round_trip(index: int, level: int, width: int, entries: bool) -> None:
    """Every tile's path parses back to the same tile."""
    tile = Tile(None if entries else level, index, width)
    assert parse_tile_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/67",
        "tile/0/x000/067",
        "tile/0/001/067",
        "tile/0/067/",
        "tile/01/067",
        "tile/64/067",
        "tile/0/067.p/0",
        "tile/0/067.p/256",
        "tile/0/067.p/07",
        "tile/0/x1/067",
        "tile/data/067",
        "tiles/0/067",
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    """Only the one canonical spelling of a tile is a tile path."""
    with pytest.raises(ValueError):
        parse_tile_path(path)


def test_tiles_for_the_specs_example() -> None:
    """70,000 leaves: 273 full + 1 of 112 at level 0, 1 full + 1 of 17 at level 1, 1 of 1 at 2."""
    tiles = list(tiles_for_size(70_000))
    assert [t for t in tiles if t.partial] == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert sum(1 for t in tiles if t.level == 0) == 274
    assert [t for t in tiles if t.level == 1] == [Tile(1, 0), Tile(1, 1, 17)]
    assert list(tiles_for_size(256)) == [Tile(0, 0), Tile(1, 0, 1)]
    assert list(tiles_for_size(0)) == []


@given(st.integers(0, 200_000), st.integers(0, 200_000))
def test_tiles_added_are_the_new_ones(a: int, b: int) -> None:
    """Growing a tree adds exactly the tiles the bigger tree has and the smaller lacks."""
    old, new = sorted((a, b))
    assert set(tiles_added(old, new)) == set(tiles_for_size(new)) - set(tiles_for_size(old))


def test_hash_tiles_from_the_store_match_the_definition(store: Store) -> None:
    """Each tile built from stored hashes is the spec's MTH sequence computed from the leaves."""
    for tile in tiles_for_size(SIZE):
        if tile.level == 0 and tile.index not in (0, 1, 272, 273):
            continue  # the level-0 tiles are plain copies; a few suffice
        assert hash_tile(tile, store.read) == hash_tile_from_leaves(tile, LEAF_HASHES)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 65_535, 65_536, 65_537, 69_999, SIZE])
def test_a_client_computes_the_root_from_tiles(store: Store, size: int) -> None:
    """The root computed from the tiles of size s is the root of the first s leaves."""
    fetched: list[Tile] = []

    def fetch(tile: Tile) -> bytes:
        fetched.append(tile)
        assert tile in set(tiles_for_size(size))
        return hash_tile(tile, store.read)

    assert root_from_tiles(size, fetch) == root_of(LEAF_HASHES[:size])
    assert len(fetched) == len(set(fetched)) <= 3 * 3


def test_proofs_from_stored_hashes_read_little(store: Store) -> None:
    """Proofs read from stored hashes equal the in-memory ones, with O(log n) store calls."""
    memory = MemoryTree(LEAF_HASHES)
    reader = StoredHashReader(store.read)
    for index, size in [(0, SIZE), (SIZE - 1, SIZE), (12_345, 65_537), (300, 301)]:
        store.calls = 0
        assert inclusion_proof(reader, index, size) == inclusion_proof(memory, index, size)
        assert store.calls <= 2 * size.bit_length()
    for old, new in [(1, SIZE), (65_536, SIZE), (300, 65_537), (69_999, SIZE)]:
        store.calls = 0
        assert consistency_proof(reader, old, new) == consistency_proof(memory, old, new)
        assert store.calls <= 2 * new.bit_length()


def test_hash_tiles_parse_by_width() -> None:
    """A tile has exactly width hashes of 32 bytes."""
    assert parse_hash_tile(b"\x01" * 64, 2) == [b"\x01" * 32] * 2
    with pytest.raises(ValueError):
        parse_hash_tile(b"\x01" * 64, 3)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    """A bundle of uint16 length-prefixed entries parses back to the same entries."""
    bundle = encode_entry_bundle(entries)
    assert parse_entry_bundle(bundle) == entries
    assert bundle[:2] == len(entries[0]).to_bytes(2, "big")


def test_bad_entry_bundles_are_refused() -> None:
    """Truncated bundles, trailing bytes and oversized entries are errors."""
    bundle = encode_entry_bundle([b"abc", b"de"])
    for bad in (bundle[:-1], bundle + b"\x00", b"", b"\x00\x05ab"):
        with pytest.raises(ValueError):
            parse_entry_bundle(bad)
    with pytest.raises(ValueError):
        encode_entry_bundle([b"x" * 65_536])
    with pytest.raises(ValueError):
        encode_entry_bundle([])
