"""The ``NoCache`` contract, next to the shared cache suite of ``test_adapter_suites.py``.

That suite's ``cache`` fixture is a function fixture (``memory``, ``redis``) and every one of its
tests asserts hits, so ``NoCache`` cannot simply join its parametrization. ``NoCache`` is what a
shared store without a shared cache gets: every ``get`` misses (reads go to the store), ``offer``
keeps nothing and says so (0 entries written), ``ping`` and ``close`` always succeed. The same
scenarios run on ``MemoryCache`` as a control: there they hit, so the misses below are ``NoCache``'s
doing, not the scenario's.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_adapter_suites import snapshot  # the shared suite's snapshots

from riskhub.bootstrap import build_cache
from riskhub.cache import MemoryCache, NoCache
from riskhub.config import Settings

SCOPES: list[tuple[str | None, ...]] = [(None,), ("paper",), (None, "paper"), (None, "paper", "live")]


@pytest.fixture
async def no_cache() -> AsyncIterator[NoCache]:
    impl = NoCache()
    yield impl
    await impl.close()


def written(count: Any) -> int:
    """An entry count as ``offer`` must return it: an int (not a bool, not None)."""
    assert type(count) is int, f"offer returned {count!r}"
    return int(count)


@pytest.mark.parametrize("scopes", SCOPES, ids=lambda s: "+".join(str(x) for x in s))
async def test_no_cache_offer_writes_nothing_and_returns_0(
    no_cache: NoCache, scopes: tuple[str | None, ...]
) -> None:
    assert written(await no_cache.offer(snapshot("v1"), scopes)) == 0


async def test_no_cache_offer_of_no_scope_and_of_a_generator_returns_0(no_cache: NoCache) -> None:
    assert written(await no_cache.offer(snapshot("v1"), ())) == 0
    assert written(await no_cache.offer(snapshot("v1"), (scope for scope in (None, "paper")))) == 0


async def test_no_cache_get_misses_after_an_offer_in_every_scope(no_cache: NoCache) -> None:
    await no_cache.offer(snapshot("v1", stage="paper"), (None, "paper"))
    assert await no_cache.get("w1", None) is None
    assert await no_cache.get("w1", "paper") is None
    assert await no_cache.get("w1", "live") is None


async def test_no_cache_get_misses_for_a_world_never_offered(no_cache: NoCache) -> None:
    assert await no_cache.get("never-seen", None) is None
    assert await no_cache.get("never-seen", "backtest") is None


async def test_no_cache_keeps_missing_as_newer_snapshots_are_offered(no_cache: NoCache) -> None:
    for minutes, version in ((0, "a"), (10, "b"), (20, "c"), (5, "old")):
        assert written(await no_cache.offer(snapshot(version, minutes=minutes), (None, "paper"))) == 0
        assert await no_cache.get("w1", None) is None
        assert await no_cache.get("w1", "paper") is None


async def test_no_cache_keeps_worlds_apart_by_keeping_none(no_cache: NoCache) -> None:
    await no_cache.offer(snapshot("v1", world="w1"), (None,))
    await no_cache.offer(snapshot("v1", world="w2"), (None,))
    assert [await no_cache.get(world, None) for world in ("w1", "w2")] == [None, None]


async def test_no_cache_ping_answers(no_cache: NoCache) -> None:
    assert await no_cache.ping() is None


async def test_no_cache_close_is_fine_twice_and_a_closed_no_cache_still_misses() -> None:
    cache = NoCache()
    assert await cache.close() is None
    assert await cache.close() is None
    assert await cache.get("w1", None) is None
    assert written(await cache.offer(snapshot("v1"), (None,))) == 0
    assert await cache.ping() is None


@pytest.mark.parametrize("method", ["get", "offer", "ping", "close"])
def test_no_cache_has_the_same_async_interface_as_the_other_caches(method: str) -> None:
    ours, theirs = getattr(NoCache, method), getattr(MemoryCache, method)
    assert inspect.iscoroutinefunction(ours)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


# --- control: the same scenarios hit on a cache that caches -------------------------------------


@pytest.mark.parametrize("scopes", SCOPES, ids=lambda s: "+".join(str(x) for x in s))
async def test_control_the_same_offer_is_written_and_hit_on_a_memory_cache(
    scopes: tuple[str | None, ...],
) -> None:
    cache = MemoryCache()
    offered = snapshot("v1")
    assert written(await cache.offer(offered, scopes)) == len(scopes)
    for scope in scopes:
        assert await cache.get("w1", scope) == offered
    await cache.close()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, MemoryCache),  # one process on its SQLite file
        ({"serve_workers": 2}, NoCache),  # processes share the file: A's cache would miss B's writes
        ({"database_url": "postgresql://hub@db/riskhub"}, NoCache),  # replicas share the database
    ],
    ids=["embedded", "embedded-2-workers", "postgres"],
)
def test_a_store_shared_by_processes_gets_no_in_process_cache(
    tmp_path: Path, settings: dict[str, Any], expected: type
) -> None:
    assert type(build_cache(Settings(data_dir=tmp_path, **settings))) is expected
