"""Hash a log as an RFC 6962 Merkle tree and prove inclusion and consistency.

Hashing is RFC 6962 section 2.1 (same in RFC 9162): a leaf is
SHA-256(0x00 || entry), an interior node SHA-256(0x01 || left || right), the
empty tree SHA-256(""). Proof generation follows RFC 6962 2.1.1 and 2.1.2
(``PATH`` and ``PROOF``); verification follows RFC 9162 2.1.3.2 and 2.1.4.2,
which check a proof without rebuilding the tree.

Generation reads the tree through a ``HashReader``: ``read(level, index)``
answers the hash of one *complete* subtree, the ``index``-th run of
``2**level`` leaves. Every proof and root touches O(log n) such nodes, so a
store only has to answer a few lookups however large the log is (see
``broadcaster.log.tiles.StoredHashReader``, which answers them from the hashes
a tiled log keeps anyway). ``MemoryTree`` is the in-memory reader for tests
and small trees.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class HashReader(Protocol):
    """Answer the hash of complete subtrees of one tree."""

    def read(self, level: int, index: int) -> bytes:
        """Return MTH of leaves ``[index * 2**level, (index + 1) * 2**level)``."""
        ...


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 6962 leaf hash of ``entry``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two smaller than ``n`` (``n`` > 1): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of ``hashes`` taken as leaf hashes (the empty root if none)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Pairing left to right and carrying an odd last node up unchanged builds
    # exactly RFC 6962's left-balanced tree.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class MemoryTree:
    """Keep every level of a tree in memory and read complete subtrees from it."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.size = len(leaf_hashes)
        self._levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def read(self, level: int, index: int) -> bytes:
        """Return the hash of a complete subtree; IndexError if the tree has no such node."""
        if level >= len(self._levels) or not 0 <= index < len(self._levels[level]):
            raise IndexError(f"no complete subtree at level {level}, index {index}")
        return self._levels[level][index]


def subtree_hash(reader: HashReader, start: int, end: int) -> bytes:
    """Return MTH of leaves ``[start, end)``, a range whose ``start`` is aligned as in RFC 6962.

    Every range that the RFC's recursions produce qualifies: ``start`` is a
    multiple of the largest power of two not above ``end - start``.
    """
    n = end - start
    if n <= 0:
        if n == 0 and start == 0:
            return EMPTY_ROOT
        raise ValueError(f"empty or negative range [{start}, {end})")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        if start % n:
            raise ValueError(f"range [{start}, {end}) is not aligned")
        return reader.read(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(reader, start, start + k), subtree_hash(reader, start + k, end))


def tree_root(reader: HashReader, size: int) -> bytes:
    """Return the root hash of the tree's first ``size`` leaves."""
    return subtree_hash(reader, 0, size)


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    """Return the audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 6962 2.1.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    # Walk from the root down to the leaf; the siblings collected on the way
    # are the path read from the top, so the result is reversed at the end.
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(subtree_hash(reader, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(reader, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(reader: HashReader, old_size: int, new_size: int) -> list[bytes]:
    """Return the proof that the tree of ``old_size`` is a prefix of ``new_size`` (RFC 6962 2.1.2).

    The proof from 0 or to the same size is empty: those are consistent by
    definition (the witness protocol relies on that).
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, whole = 0, new_size, True
    m = old_size
    # SUBPROOF(m, D[start:end], whole), unrolled: descend until the old tree is
    # exactly a subtree, collecting the other halves (again top first).
    while m != end:
        k = _split(end - start)
        if m - start <= k:
            proof.append(subtree_hash(reader, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(reader, start, start + k))
            start += k
            whole = False
    if not whole:
        proof.append(subtree_hash(reader, start, end))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return whether ``proof`` puts leaf hash ``leaf`` at ``index`` under ``root``.

    The algorithm is RFC 9162 2.1.3.2; a hash of the wrong length fails.
    """
    if not 0 <= index < size or any(len(h) != HASH_SIZE for h in (leaf, root, *proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return whether ``proof`` shows the ``old_size`` tree is a prefix of ``new_size``.

    The algorithm is RFC 9162 2.1.4.2. From size 0 every tree is consistent
    with an empty proof; between equal sizes the roots must match and the
    proof must be empty.
    """
    if not 0 <= old_size <= new_size:
        return False
    if any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree: its root is the proof's implicit first node.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
