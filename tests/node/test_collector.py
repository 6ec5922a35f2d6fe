"""The serving process's collector settings (townhall.node.collector)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from townhall.node import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_leave_the_collectors_sight_and_collections_become_rarer() -> None:
    long_lived = [{"route": n} for n in range(1_000)]  # what a started server holds
    collector.tune_after_startup()
    assert gc.get_freeze_count() >= len(long_lived)
    young, middle, old = gc.get_threshold()
    assert young == collector.YOUNG_THRESHOLD > 700  # the interpreter's default is 700
    assert (middle, old) == (collector.MIDDLE_THRESHOLD, collector.OLD_THRESHOLD)


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_startup_are_still_collected() -> None:
    collector.tune_after_startup()

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
