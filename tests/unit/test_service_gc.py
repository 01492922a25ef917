"""Long-running commands tune the cyclic garbage collector once start-up is done."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from riskhub.cli.common import SERVICE_GC_THRESHOLDS, tune_gc_for_service


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_service_gc_collects_rarely_and_skips_startup_objects() -> None:
    gc.unfreeze()
    start_up_objects = [{"built": i} for i in range(100)]

    tune_gc_for_service()

    assert gc.get_threshold() == SERVICE_GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700  # CPython's default gen-0 threshold
    assert gc.get_freeze_count() >= len(start_up_objects)
    # Cycles made after start-up are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
