"""Backfill: repopulate the latest cache from the store (and optionally re-emit the events).

Only what the store says is newest is offered, and the cache never replaces a newer entry, so a
backfill can run against a live hub without regressing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from riskhub.cache import LatestCache
from riskhub.contract import dedupe_key
from riskhub.events import snapshot_event
from riskhub.hub import utc_now
from riskhub.model import NewOutboxEvent, StoredSnapshot
from riskhub.store import SnapshotStore


@dataclass
class BackfillReport:
    """What a backfill did."""

    worlds: int = 0
    cached: int = 0  # entries written; an expired snapshot or an older one than the entry is not
    re_emitted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # world -> why it has no latest entry


async def backfill_latest(
    store: SnapshotStore,
    cache: LatestCache,
    world_ids: Iterable[str],
    *,
    stages: Iterable[str],
    re_emit: bool = False,
    on_world: Callable[[str], None] = lambda _: None,
    clock: Callable[[], datetime] = utc_now,
) -> BackfillReport:
    """Offer each world's newest snapshot (overall and per stage) to the cache, and re-emit it
    if asked. A world without a snapshot, or whose newest has expired, is skipped (its stages may
    still have live entries). An unreachable cache raises ``CacheUnavailable`` before anything
    is read, even when nothing needs writing."""
    await cache.ping()
    report = BackfillReport()
    stages = list(stages)
    for world_id in world_ids:
        report.worlds += 1
        await _backfill_world(store, cache, world_id, stages, re_emit, clock(), report)
        on_world(world_id)
    return report


async def _backfill_world(
    store: SnapshotStore,
    cache: LatestCache,
    world_id: str,
    stages: list[str],
    re_emit: bool,
    now: datetime,
    report: BackfillReport,
) -> None:
    newest = await store.latest_snapshot(world_id)
    if newest is None:
        report.skipped[world_id] = "no snapshot"
        return
    if newest.is_expired(now):  # never served as latest, and its event would only be dropped
        expired_at = newest.expires_at.isoformat().replace("+00:00", "Z")
        report.skipped[world_id] = f"its latest snapshot ({newest.version}) expired at {expired_at}"
    else:
        report.cached += await cache.offer(newest, (None,))
        if re_emit:
            await store.enqueue_event(reemit_event(newest))
            report.re_emitted += 1
    for stage in stages:
        in_stage = await store.latest_snapshot(world_id, stage=stage)
        if in_stage is not None and not in_stage.is_expired(now):
            report.cached += await cache.offer(in_stage, (stage,))


def reemit_event(snapshot: StoredSnapshot) -> NewOutboxEvent:
    """The snapshot's event again: same id and idempotency key, so consumers deduplicate it."""
    key = dedupe_key(snapshot.world_id, snapshot.version, snapshot.hash, snapshot.actor, snapshot.stage)
    return snapshot_event(snapshot.world_id, snapshot.version, key)
