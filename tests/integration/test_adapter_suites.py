"""The same store, cache and blob suites against every implementation (real services)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from orjson import loads

from riskhub.blobs import BlobStore, FileBlobStore, RedisBlobStore, S3BlobStore
from riskhub.cache import LatestCache, MemoryCache, RedisCache
from riskhub.errors import (
    BlobCorrupted,
    BlobMissing,
    BlobStoreUnavailable,
    ContractError,
    StoreUnavailable,
    VersionConflict,
)
from riskhub.model import NewOutboxEvent, Outcome, StoredSnapshot, WorkerResult
from riskhub.store import SnapshotStore, postgres
from riskhub.store.postgres import PostgresStore
from riskhub.store.sqlite import SqliteStore

from conftest import Production

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def snapshot(
    version: str, *, world: str = "w1", minutes: int = 0, stage: str | None = "paper", digest: str = "d1"
) -> StoredSnapshot:
    created = datetime.now(UTC)
    return StoredSnapshot(
        world_id=world,
        version=version,
        hash=f"sha256:{digest}",
        content_sha256=f"sha256:{digest}",
        as_of=T0 + timedelta(minutes=minutes),
        created_at=created,
        expires_at=created + timedelta(hours=1),
        actor="gateway",
        stage=stage,
        payload=b'{"version":"%s"}' % version.encode(),
    )


def event(world: str = "w1", event_id: str = "e", version: str = "v1") -> NewOutboxEvent:
    return NewOutboxEvent(
        world_id=world,
        version=version,
        event_id=event_id,
        event_type="risk_snapshot_updated",
        correlation_id=None,
        extra=b'{"event_version":1}',
    )


# --- stores ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    if request.param == "sqlite":
        impl: SnapshotStore = SqliteStore(tmp_path / "store.sqlite3")
    else:
        production: Production = request.getfixturevalue("production")
        impl = PostgresStore(production.postgres.dsn, schema=production.namespace)
    await impl.open()
    yield impl
    await impl.close()


async def test_store_insert_is_idempotent_and_conflicts_on_other_content(store: SnapshotStore) -> None:
    first = await store.insert_snapshot(snapshot("v1"), event())
    assert first.created and first.newest_in == (None, "paper")
    again = await store.insert_snapshot(snapshot("v1"), event())
    assert not again.created and again.snapshot.version == "v1"
    with pytest.raises(VersionConflict):
        await store.insert_snapshot(snapshot("v1", digest="other"), event())
    async with store.claim_outbox(10) as batch:
        assert len(batch.events) == 1  # one event, not three


async def test_store_newest_in_tells_where_a_snapshot_is_newest(store: SnapshotStore) -> None:
    await store.insert_snapshot(snapshot("live", minutes=10, stage="live"), event())
    older_paper = await store.insert_snapshot(snapshot("paper", minutes=5, stage="paper"), event())
    assert older_paper.newest_in == ("paper",)
    older = await store.insert_snapshot(snapshot("old", minutes=1, stage="live"), event())
    assert older.newest_in == ()


async def test_store_latest_list_and_as_of(store: SnapshotStore) -> None:
    for version, minutes, stage in (("a", 0, "paper"), ("b", 20, "live"), ("c", 10, "paper")):
        await store.insert_snapshot(snapshot(version, minutes=minutes, stage=stage), event())
    assert (await store.latest_snapshot("w1")).version == "b"  # type: ignore[union-attr]
    assert (await store.latest_snapshot("w1", stage="paper")).version == "c"  # type: ignore[union-attr]
    assert await store.latest_snapshot("w1", actor="nobody") is None
    assert [s.version for s in await store.list_snapshots("w1", limit=10)] == ["b", "c", "a"]
    assert [s.version for s in await store.list_snapshots("w1", limit=2, stage="paper")] == ["c", "a"]
    found = await store.snapshot_as_of("w1", T0 + timedelta(minutes=15))
    assert found is not None and found.version == "c"
    assert await store.world_ids() == ["w1"]


async def test_store_outbox_is_claimed_in_order_and_marked(store: SnapshotStore) -> None:
    for i in range(5):
        await store.insert_snapshot(
            snapshot(f"v{i}", world=f"w{i % 2}"), event(f"w{i % 2}", f"e{i}", f"v{i}")
        )
    async with store.claim_outbox(10) as batch:
        assert [e.event_id for e in batch.events] == ["e0", "e1", "e2", "e3", "e4"]
        await batch.mark_published([batch.events[0].id, batch.events[1].id])
        await batch.mark_failed(batch.events[2].id, "broker down")
    backlog = await store.outbox_backlog()
    assert backlog.pending == 3 and backlog.oldest_created_at is not None
    async with store.claim_outbox(10) as batch:
        assert [e.event_id for e in batch.events] == ["e2", "e3", "e4"]
        assert batch.events[0].attempts == 1


def another_store_on(store: SnapshotStore, tmp_path: Path, production: Production | None) -> SnapshotStore:
    """A second store on the same database, as another process would open it."""
    if isinstance(store, SqliteStore):
        return SqliteStore(tmp_path / "store.sqlite3")
    assert production is not None
    return PostgresStore(production.postgres.dsn, schema=production.namespace)


async def test_store_two_claimers_never_hold_the_same_events(
    store: SnapshotStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """However many relays run (one per `serve` process), each event is claimed by one pass."""
    production = request.getfixturevalue("production") if isinstance(store, PostgresStore) else None
    other = another_store_on(store, tmp_path, production)
    await other.open()
    for i in range(4):
        await store.insert_snapshot(
            snapshot(f"v{i}", world=f"w{i % 2}"), event(f"w{i % 2}", f"e{i}", f"v{i}")
        )

    async def claimed_by_other() -> list[str]:
        async with other.claim_outbox(10) as batch:
            return [e.event_id for e in batch.events]

    try:
        async with store.claim_outbox(10) as first:
            assert [e.event_id for e in first.events] == ["e0", "e1", "e2", "e3"]
            second = asyncio.create_task(claimed_by_other())
            await asyncio.sleep(0.2)  # the other claims now: it must not get what this pass holds
            await first.mark_published([e.id for e in first.events])
        assert await second == []
    finally:
        await other.close()


async def test_store_processed_keys_are_unique_and_dlq_can_be_reprocessed(store: SnapshotStore) -> None:
    rows = [WorkerResult("stress", {"x": 1})]
    assert await store.record_outcomes([Outcome("k1", "processed", rows)]) == [True]
    assert await store.record_outcomes([Outcome("k1", "processed", [WorkerResult("stress", {"x": 2})])]) == [
        False
    ]
    assert await store.worker_results("k1") == rows
    assert await store.record_outcomes([Outcome("k2", "dlq")]) == [True]
    assert await store.processed_outcomes(["k1", "k2", "k3"]) == {"k1": "processed", "k2": "dlq"}
    # a replay runs the workers again
    assert await store.record_outcomes([Outcome("k2", "processed", rows)]) == [True]
    assert await store.processed_outcomes(["k2"]) == {"k2": "processed"}


async def test_store_records_a_batch_of_outcomes_in_order(store: SnapshotStore) -> None:
    await store.record_outcomes([Outcome("old", "processed", [WorkerResult("w", {"i": 0})])])
    batch = [
        Outcome("a", "processed", [WorkerResult("w", {"i": 1}), WorkerResult("v", {"i": 2})]),
        Outcome("old", "processed", [WorkerResult("w", {"i": 3})]),  # already processed
        Outcome("b", "dlq"),
        Outcome("b", "processed", [WorkerResult("w", {"i": 4})]),  # the same key again, later
        Outcome("b", "processed", [WorkerResult("w", {"i": 5})]),  # now a duplicate
    ]
    assert await store.record_outcomes(batch) == [True, False, True, True, False]
    assert await store.worker_results("a") == [WorkerResult("v", {"i": 2}), WorkerResult("w", {"i": 1})]
    assert await store.worker_results("old") == [WorkerResult("w", {"i": 0})]
    assert await store.worker_results("b") == [WorkerResult("w", {"i": 4})]
    assert await store.processed_outcomes(["a", "b", "old"]) == {
        "a": "processed",
        "b": "processed",
        "old": "processed",
    }


async def test_store_concurrent_duplicate_outcomes_record_once(store: SnapshotStore) -> None:
    results = await asyncio.gather(
        *(
            store.record_outcomes([Outcome("same", "processed", [WorkerResult("w", {"i": i})])])
            for i in range(8)
        )
    )
    assert [recorded for (recorded,) in results].count(True) == 1


async def test_store_migrations_are_idempotent(store: SnapshotStore) -> None:
    await store.close()
    await store.open()  # applying migrations again is a no-op
    assert await store.world_ids() == []


@pytest.fixture(params=["sqlite", "postgres"])
def unopened_store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    """A store on an existing, empty database (no migration applied), not opened yet."""
    if request.param == "sqlite":
        sqlite3.connect(tmp_path / "empty.sqlite3").close()
        return SqliteStore(tmp_path / "empty.sqlite3")
    production: Production = request.getfixturevalue("production")
    return PostgresStore(production.postgres.dsn, schema=production.namespace)


async def test_store_opened_without_migrating_reports_every_migration_pending(
    unopened_store: SnapshotStore,
) -> None:
    await unopened_store.open(migrate=False)
    try:
        versions = await unopened_store.schema_versions()
        assert versions.applied == () and versions.pending == versions.known and len(versions.known) >= 2
    finally:
        await unopened_store.close()
    await unopened_store.open()
    try:
        versions = await unopened_store.schema_versions()
        assert versions.applied == versions.known and versions.pending == versions.unknown == ()
    finally:
        await unopened_store.close()


async def test_sqlite_opened_without_migrating_never_creates_a_database(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "absent" / "riskhub.sqlite3")
    with pytest.raises(StoreUnavailable):
        await store.open(migrate=False)
    await store.close()
    assert not (tmp_path / "absent").exists()


async def test_postgres_migration_2_keeps_snapshots_stored_as_jsonb(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at migration 1 (jsonb payloads) upgrades in place: its snapshots read back,
    its pending events still claim, and new writes use the bytea function."""
    old = PostgresStore(production.postgres.dsn, schema=production.namespace)
    monkeypatch.setattr(postgres, "MIGRATIONS", postgres.MIGRATIONS[:1])
    await old.open()
    await old.close()
    monkeypatch.undo()
    conn = await asyncpg.connect(
        production.postgres.dsn, server_settings={"search_path": production.namespace}
    )
    try:  # what the migration-1 code wrote: a jsonb payload through the jsonb function
        snap = snapshot("v1")
        await conn.execute(
            "SELECT risk_insert_snapshot(1, 'c', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb,"
            " 'e1', 'risk_snapshot_updated', NULL, $11)",
            *(snap.world_id, snap.version, snap.hash, snap.content_sha256, snap.as_of, snap.created_at),
            *(snap.expires_at, snap.actor, snap.stage, snap.payload.decode(), '{"event_version":1}'),
        )
    finally:
        await conn.close()
    store = PostgresStore(production.postgres.dsn, schema=production.namespace)
    await store.open()
    try:
        stored = await store.get_snapshot("w1", "v1")
        assert stored is not None and loads(stored.payload) == {"version": "v1"}
        assert (await store.insert_snapshot(snapshot("v2", minutes=1), event("w1", "e2", "v2"))).created
        async with store.claim_outbox(10) as batch:
            assert [loads(e.data) for e in batch.events] == [
                {"version": "v1", "event_version": 1},
                {"version": "v2", "event_version": 1},
            ]
    finally:
        await store.close()


# --- caches ---------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[LatestCache]:
    if request.param == "memory":
        impl: LatestCache = MemoryCache()
    else:
        production: Production = request.getfixturevalue("production")
        impl = RedisCache(
            production.redis.url, prefix=f"{production.namespace}:", clock=lambda: datetime.now(UTC)
        )
    yield impl
    await impl.close()


async def test_cache_keeps_the_newest_per_scope(cache: LatestCache) -> None:
    assert await cache.offer(snapshot("b", minutes=10), (None, "paper")) == 2  # entries written
    assert await cache.offer(snapshot("a", minutes=5), (None, "paper")) == 0  # older: ignored
    got = await cache.get("w1", None)
    assert got is not None and got.version == "b"
    await cache.offer(snapshot("c", minutes=20, stage="live"), (None, "live"))
    assert (await cache.get("w1", None)).version == "c"  # type: ignore[union-attr]
    assert (await cache.get("w1", "paper")).version == "b"  # type: ignore[union-attr]
    assert await cache.get("w1", "backtest") is None


async def test_cache_ranks_snapshots_before_1970_by_time(cache: LatestCache) -> None:
    def before_epoch(version: str, day: int) -> StoredSnapshot:
        return replace(snapshot(version), as_of=datetime(1969, 12, day, tzinfo=UTC))

    await cache.offer(before_epoch("older", 30), (None,))
    await cache.offer(before_epoch("newer", 31), (None,))
    await cache.offer(before_epoch("older", 30), (None,))  # a retry of the older one: ignored
    got = await cache.get("w1", None)
    assert got is not None and got.version == "newer" and got.as_of.year == 1969


async def test_cache_round_trips_every_field(cache: LatestCache) -> None:
    original = snapshot("v1", stage=None)
    await cache.offer(original, (None,))
    assert await cache.get("w1", None) == original


async def test_redis_cache_entry_expires_with_the_snapshot(production: Production) -> None:
    cache = RedisCache(
        production.redis.url, prefix=f"{production.namespace}:", clock=lambda: datetime.now(UTC)
    )
    await cache.offer(replace_expiry(snapshot("v1"), milliseconds=300), (None,))
    assert await cache.get("w1", None) is not None
    await asyncio.sleep(0.5)
    assert await cache.get("w1", None) is None
    await cache.close()


async def test_redis_cache_entry_lives_at_most_max_age(production: Production) -> None:
    """A refresh the hub could not make (Redis down, a crash after the commit) must not leave an
    older snapshot "latest" for its whole TTL."""
    cache = RedisCache(
        production.redis.url,
        prefix=f"{production.namespace}:",
        clock=lambda: datetime.now(UTC),
        max_age_s=0.3,
    )
    await cache.offer(snapshot("v1"), (None,))  # expires in an hour
    assert await cache.get("w1", None) is not None
    await asyncio.sleep(0.5)
    assert await cache.get("w1", None) is None
    await cache.close()


def replace_expiry(snap: StoredSnapshot, *, milliseconds: int) -> StoredSnapshot:
    return replace(snap, expires_at=datetime.now(UTC) + timedelta(milliseconds=milliseconds))


# --- blob stores ----------------------------------------------------------------------------------


@pytest.fixture(params=["file", "s3", "redis"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "file":
        impl: BlobStore = FileBlobStore(tmp_path / "blobs")
    else:
        production: Production = request.getfixturevalue("production")
        if request.param == "s3":
            impl = S3BlobStore("riskhub-test", production.namespace, endpoint_url=production.s3.endpoint_url)
        else:
            impl = RedisBlobStore(production.redis.url, prefix=f"{production.namespace}:blob:", ttl_s=60)
    yield impl
    await impl.close()


async def test_blob_refs_are_content_addressed(blobs: BlobStore) -> None:
    ref = await blobs.put(b'{"a,b":0.1}')
    assert await blobs.put(b'{"a,b":0.1}') == ref
    assert await blobs.put(b'{"a,b":0.2}') != ref
    assert await blobs.get(ref) == b'{"a,b":0.1}'
    assert blobs.address_of(ref) == ref.rsplit("/", 1)[-1].split(":")[-1].removesuffix(".json")
    assert await blobs.pin(ref)
    await blobs.ping()


async def test_blob_refs_outside_the_store_are_refused(blobs: BlobStore) -> None:
    ref = await blobs.put(b"[1]")
    foreign = [
        "file:///etc/passwd",
        ref.replace(ref.rsplit("/", 1)[-1], "../" + ref.rsplit("/", 1)[-1]),
        "s3://other-bucket/x/" + "0" * 64 + ".json",
        "redis://elsewhere:" + "0" * 64,
        ref + "x",
    ]
    for bad in foreign:
        assert blobs.address_of(bad) is None, bad
        with pytest.raises(ContractError):
            await blobs.get(bad)


async def test_missing_blob_is_reported_not_invented(blobs: BlobStore) -> None:
    ref = await blobs.put(b"[2]")
    missing = ref.replace(blobs.address_of(ref) or "", "f" * 64)
    assert not await blobs.pin(missing)
    with pytest.raises(BlobMissing):
        await blobs.get(missing)


async def test_a_deleted_blob_is_gone_and_deleting_it_again_is_fine(blobs: BlobStore) -> None:
    ref = await blobs.put(b'{"probe":"doctor"}')
    await blobs.delete(ref)
    with pytest.raises(BlobMissing):
        await blobs.get(ref)
    await blobs.delete(ref)


async def test_s3_blobs_in_a_bucket_that_does_not_exist_are_unavailable(production: Production) -> None:
    store = S3BlobStore("no-such-bucket", "x", endpoint_url=production.s3.endpoint_url)
    try:
        with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
            await store.put(b"[1]")
    finally:
        await store.close()


async def test_redis_blob_pin_clears_the_ttl(production: Production) -> None:
    store = RedisBlobStore(production.redis.url, prefix=f"{production.namespace}:b:", ttl_s=60)
    ref = await store.put(b"[3]")
    client = aioredis.Redis.from_url(production.redis.url)
    key = f"{production.namespace}:b:" + (store.address_of(ref) or "")
    assert 0 < await client.ttl(key) <= 60
    assert await store.pin(ref)
    assert await client.ttl(key) == -1
    assert await store.put(b"[3]") == ref  # an unpinned put of the same content keeps the pin
    assert await client.ttl(key) == -1
    pinned = await store.put(b"[5]", pin=True)  # the hub's own offload: pinned from the start
    assert await client.ttl(f"{production.namespace}:b:" + (store.address_of(pinned) or "")) == -1
    await client.set(key, b"[4]")  # corrupt it
    with pytest.raises(BlobCorrupted):
        await store.get(ref)
    await client.aclose()
    await store.close()
