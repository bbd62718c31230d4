"""Tests for ``broadcaster.gc_pauses``: survivors frozen, frozen garbage reclaimed in bounds."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from broadcaster.gc_pauses import RECLAIM_FACTOR, RECLAIM_INTERVAL, FrozenSurvivors


class Node:
    """An object that can sit in a reference cycle."""

    other: object = None


@pytest.fixture
def frozen() -> Iterator[FrozenSurvivors]:
    hook = FrozenSurvivors()
    hook.install()
    try:
        yield hook
    finally:
        hook.uninstall()
        gc.unfreeze()


def test_a_full_collection_freezes_its_survivors(frozen: FrozenSurvivors) -> None:
    before = gc.get_freeze_count()
    kept = [[n] for n in range(1000)]
    gc.collect()
    assert gc.get_freeze_count() >= before + 1000
    # the next full collection does not walk them again
    assert not any(o is kept[0] for o in gc.get_objects(generation=2))


def test_frozen_cyclic_garbage_is_reclaimed_once_the_heap_doubles_after_the_interval(
    frozen: FrozenSurvivors,
) -> None:
    node = Node()
    node.other = node
    alive = weakref.ref(node)
    gc.collect()  # the cycle survives, so it is frozen
    del node
    gc.collect()
    assert alive() is not None  # garbage now, but frozen: not walked
    assert frozen.complete_passes == 0

    grown = [[n] for n in range(int(frozen.baseline * RECLAIM_FACTOR))]
    gc.collect()
    assert frozen.complete_passes == 0 and alive() is not None  # the interval has not passed
    frozen.last_complete -= RECLAIM_INTERVAL
    gc.collect()  # frozen objects more than doubled, the interval passed: everything unfrozen
    gc.collect()  # a complete pass
    assert alive() is None
    assert frozen.complete_passes == 1
    assert frozen.baseline >= len(grown)
    assert gc.get_freeze_count() >= len(grown)  # freezing resumed


def test_no_complete_pass_while_the_heap_stays_the_same(frozen: FrozenSurvivors) -> None:
    frozen.last_complete -= RECLAIM_INTERVAL
    for _ in range(20):
        temporary = [[n] for n in range(10_000)]
        gc.collect()
        del temporary
    assert frozen.complete_passes == 0
