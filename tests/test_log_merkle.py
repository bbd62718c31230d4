"""RFC 6962 hashing and proofs of ``broadcaster.log.merkle``.

The reference vectors are the 8-leaf tree used by certificate-transparency and
by Go's github.com/transparency-dev/merkle (``proof/verify_test.go``: the
leaves, the roots of every prefix, and the published inclusion and consistency
proofs), typed in here as data.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.log.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    subtree_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
#: ROOTS[i] is the root of the tree of the first i + 1 leaves.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _hashes(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


#: (leaf index, tree size, proof), indexes from 0.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _hashes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hashes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hashes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hashes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
#: (old size, new size, proof).
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _hashes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hashes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hashes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hashes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]
TREE = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])


def test_hashing_is_rfc_6962() -> None:
    """Leaves, nodes and the empty tree hash with RFC 6962's prefixes."""
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert root_of([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_reference_tree(size: int) -> None:
    """The root of every prefix of the reference tree is the published one, by both routes."""
    hashes = [leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert root_of(hashes) == ROOTS[size - 1]
    assert tree_root(TREE, size) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, proof: list[bytes]) -> None:
    """Generated inclusion proofs are the published ones, and they verify."""
    assert inclusion_proof(TREE, index, size) == proof
    assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(old: int, new: int, proof: list[bytes]) -> None:
    """Generated consistency proofs are the published ones, and they verify."""
    assert consistency_proof(TREE, old, new) == proof
    assert verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[bytes]) -> None:
    """A wrong index, size, leaf, root or proof element never verifies."""
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    assert not verify_inclusion(leaf, index + 1, size, proof, root)
    assert not verify_inclusion(leaf, index ^ 2, size, proof, root)
    assert not verify_inclusion(leaf, index, size * 2, proof, root)
    assert not verify_inclusion(leaf, index, size // 2, proof, root)
    assert not verify_inclusion(leaf_hash(b"wrong"), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    assert not verify_inclusion(leaf, index, size, [root, *proof], root)
    assert not verify_inclusion(leaf, index, size, proof[:-1], root)
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        assert not verify_inclusion(leaf, index, size, bad, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(old: int, new: int, proof: list[bytes]) -> None:
    """A wrong size, root or proof element never verifies."""
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert not verify_consistency(old - 1, new, r1, r2, proof)
    assert not verify_consistency(old + 1, new, r1, r2, proof)
    assert not verify_consistency(old, new * 2, r1, r2, proof)
    assert not verify_consistency(old, new, r2, r1, proof)
    assert not verify_consistency(old, new, r1, r2, [])
    assert not verify_consistency(old, new, r1, r2, [*proof, r1])
    assert not verify_consistency(old, new, r1, r2, [proof[0], *proof])
    assert not verify_consistency(old, new, r1, r2, proof[:-1])
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        assert not verify_consistency(old, new, r1, r2, bad)


def test_trivial_consistency() -> None:
    """From size 0 any tree is consistent; equal sizes need equal roots; both need no proof."""
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [ROOTS[0]])
    assert verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    assert not verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[2], ROOTS[2], [ROOTS[0]])
    assert not verify_consistency(4, 3, ROOTS[3], ROOTS[2], [])
    assert consistency_proof(TREE, 0, 8) == [] == consistency_proof(TREE, 8, 8)


def test_bad_arguments_are_refused() -> None:
    """Leaves outside the tree and shrinking trees raise; hashes of the wrong length fail."""
    with pytest.raises(ValueError):
        inclusion_proof(TREE, 8, 8)
    with pytest.raises(ValueError):
        consistency_proof(TREE, 5, 4)
    with pytest.raises(ValueError):
        subtree_hash(TREE, 1, 3)
    assert not verify_inclusion(b"short", 0, 1, [], b"short")


@st.composite
def trees(draw: st.DrawFn, max_size: int = 70) -> MemoryTree:
    size = draw(st.integers(min_value=1, max_value=max_size))
    return MemoryTree([leaf_hash(i.to_bytes(4, "big")) for i in range(size)])


@given(trees(), st.data())
def test_every_inclusion_proof_verifies_and_a_flipped_bit_fails(
    tree: MemoryTree, data: st.DataObject
) -> None:
    """For any tree and leaf, the proof verifies; flipping any bit of it, or the root, fails."""
    size = data.draw(st.integers(min_value=1, max_value=tree.size), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    root = tree_root(tree, size)
    assert root == root_of([tree.read(0, i) for i in range(size)])
    proof = inclusion_proof(tree, index, size)
    leaf = tree.read(0, index)
    assert verify_inclusion(leaf, index, size, proof, root)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = list(proof)
        bad[element] = (int.from_bytes(bad[element], "big") ^ (1 << bit)).to_bytes(32, "big")
        assert not verify_inclusion(leaf, index, size, bad, root)
    bad_root = bytes([root[0] ^ 1]) + root[1:]
    assert not verify_inclusion(leaf, index, size, proof, bad_root)


@given(trees(), st.data())
def test_every_consistency_proof_verifies_and_a_flipped_bit_fails(
    tree: MemoryTree, data: st.DataObject
) -> None:
    """For any two sizes, the proof verifies; flipping any bit of it, or either root, fails."""
    new = data.draw(st.integers(min_value=1, max_value=tree.size), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new), label="old")
    r1, r2 = tree_root(tree, old), tree_root(tree, new)
    proof = consistency_proof(tree, old, new)
    assert verify_consistency(old, new, r1, r2, proof)
    assert not verify_consistency(old, new, r1, bytes([r2[0] ^ 1]) + r2[1:], proof)
    if proof:
        assert not verify_consistency(old, new, bytes([r1[0] ^ 1]) + r1[1:], r2, proof)
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = list(proof)
        bad[element] = (int.from_bytes(bad[element], "big") ^ (1 << bit)).to_bytes(32, "big")
        assert not verify_consistency(old, new, r1, r2, bad)
