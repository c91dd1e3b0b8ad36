"""The collector settings of a server process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from devteam.heap import FIRST_GENERATION_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_what_exists_and_passes_less_often() -> None:
    before = gc.get_threshold()
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD, before[1], before[2])
    # Objects made afterwards are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
