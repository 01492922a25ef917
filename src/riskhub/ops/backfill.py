"""Backfill: repopulate the latest cache from the store (and optionally re-emit the events).

Only what the store says is newest is offered, and the cache never replaces a newer entry, so a
backfill can run against a live hub without regressing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from riskhub.cache import LatestCache
from riskhub.contract import dedupe_key
from riskhub.events import snapshot_event
from riskhub.model import NewOutboxEvent, StoredSnapshot
from riskhub.store import SnapshotStore


@dataclass
class BackfillReport:
    """What a backfill did."""

    worlds: int = 0
    cached: int = 0  # entries written; an expired snapshot or an older one than the entry is not
    missing: list[str] = field(default_factory=list)
    re_emitted: int = 0


async def backfill_latest(
    store: SnapshotStore,
    cache: LatestCache,
    world_ids: Iterable[str],
    *,
    stages: Iterable[str],
    re_emit: bool = False,
    on_world: Callable[[str], None] = lambda _: None,
) -> BackfillReport:
    """Offer each world's newest snapshot (overall and per stage) to the cache. An unreachable
    cache raises ``CacheUnavailable`` before anything is read, even when nothing needs writing."""
    await cache.ping()
    report = BackfillReport()
    for world_id in world_ids:
        report.worlds += 1
        newest = await store.latest_snapshot(world_id)
        if newest is None:
            report.missing.append(world_id)
            on_world(world_id)
            continue
        report.cached += await cache.offer(newest, (None,))
        for stage in stages:
            in_stage = await store.latest_snapshot(world_id, stage=stage)
            if in_stage is not None:
                report.cached += await cache.offer(in_stage, (stage,))
        if re_emit:
            await store.enqueue_event(reemit_event(newest))
            report.re_emitted += 1
        on_world(world_id)
    return report


def reemit_event(snapshot: StoredSnapshot) -> NewOutboxEvent:
    """The snapshot's event again: same id and idempotency key, so consumers deduplicate it."""
    key = dedupe_key(snapshot.world_id, snapshot.version, snapshot.hash, snapshot.actor, snapshot.stage)
    return snapshot_event(snapshot.world_id, snapshot.version, key)
