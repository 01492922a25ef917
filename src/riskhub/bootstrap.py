"""The one composition root: builds store, cache, blobs, bus, hub, relay and consumer from Settings.

Nothing configured -> embedded (SQLite file, in-process cache, files, in-process bus) under
``data_dir``, with no cache when ``serve_workers`` > 1 processes share the file; each ``*_url``
setting swaps in the production implementation of that part only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from riskhub.blobs import BlobStore, FileBlobStore, RedisBlobStore, S3BlobStore
from riskhub.bus import Publisher
from riskhub.bus.consumer import ConsumerPolicy, SnapshotConsumer
from riskhub.bus.kafka import GroupSettings, KafkaPublisher, KafkaWorker
from riskhub.bus.memory import MemoryBus
from riskhub.bus.relay import OutboxRelay
from riskhub.cache import LatestCache, MemoryCache, NoCache, RedisCache
from riskhub.config import Settings
from riskhub.errors import CacheUnavailable
from riskhub.hub import Hub, HubLimits, utc_now
from riskhub.metrics import Metrics
from riskhub.risk.limits import LimitBook, load_limits
from riskhub.risk.workers import RiskPolicy, load_workers
from riskhub.store import SnapshotStore
from riskhub.store.postgres import PostgresStore
from riskhub.store.sqlite import SqliteStore

log = logging.getLogger(__name__)
EVICTION_PERIOD_S = 300.0


@dataclass
class Components:
    """Everything a running hub holds; built by ``build_components``, started by ``start``."""

    settings: Settings
    metrics: Metrics
    store: SnapshotStore
    cache: LatestCache
    blobs: BlobStore
    publisher: Publisher
    hub: Hub
    relay: OutboxRelay
    consumer: SnapshotConsumer
    memory_bus: MemoryBus | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, background: bool = True) -> None:
        """Open the store (migrations) and start the relay/consumer tasks the settings ask for."""
        await self.store.open()
        if isinstance(self.blobs, FileBlobStore):
            swept = await self.blobs.sweep_temp_files()
            if swept:
                log.warning("removed %d temp files of blob writes that died half-way", swept)
        if background and self.settings.run_relay:
            await self.store.listen(self.relay.notify)
        if self.memory_bus is not None and self.settings.run_consumer:
            self.memory_bus.subscribe(
                self.settings.controlbus_topic, partial(self.consumer.handle_batch, per_key=True)
            )
        if background and self.settings.run_relay:
            self.tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if background:
            self.tasks.append(asyncio.create_task(self._evict_idle_worlds(), name="idle-worlds"))

    async def _evict_idle_worlds(self) -> None:
        """Every few minutes, forget the worlds idle for ``idle_world_sec``: their metric series
        and cached latest entries (the store keeps everything; a read fills the cache again)."""
        idle_s = self.settings.idle_world_sec
        while True:
            await asyncio.sleep(min(idle_s, EVICTION_PERIOD_S))
            for world_id, _ in self.metrics.evict_idle(idle_s):
                with contextlib.suppress(CacheUnavailable):
                    await self.cache.forget(world_id, (None, *self.settings.allowed_stages))

    async def stop(self) -> None:
        """Cancel background tasks and close every adapter."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        for closer in (self.publisher.close, self.cache.close, self.blobs.close, self.store.close):
            try:
                await closer()
            except Exception:
                log.exception("error while closing %s", closer)


def build_store(settings: Settings) -> SnapshotStore:
    """SQLite under data_dir unless ``database_url`` names PostgreSQL."""
    path = sqlite_path(settings)
    if path is not None:
        return SqliteStore(path, synchronous=settings.sqlite_synchronous)
    url = settings.database_url or ""
    if _is_postgres(url):
        return PostgresStore(
            url, schema=settings.database_schema, max_connections=settings.database_pool_size
        )
    raise ValueError(f"database_url: unsupported scheme in {url.split(':', 1)[0]!r}")


def _is_postgres(database_url: str | None) -> bool:
    return database_url is not None and database_url.startswith(("postgresql://", "postgres://"))


def build_cache(settings: Settings) -> LatestCache:
    """Redis if ``redis_url`` is set; else in-process next to SQLite served by one process, and
    none where processes share the store (PostgreSQL, or SQLite under ``serve --workers N``):
    an in-process cache would keep serving what another process has since replaced."""
    if settings.redis_url is not None:
        return RedisCache(
            settings.redis_url,
            prefix=settings.cache_prefix,
            clock=utc_now,
            max_age_s=settings.cache_max_age_sec,
        )
    shared = _is_postgres(settings.database_url) or settings.serve_workers > 1
    return NoCache() if shared else MemoryCache()


def build_blobs(settings: Settings) -> BlobStore:
    """Files under data_dir unless ``blob_url`` says otherwise."""
    url = settings.blob_url
    if url is None:
        return FileBlobStore((settings.data_dir / "blobs").absolute())
    if url.startswith("file://"):
        return FileBlobStore(_path_of(url))
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3BlobStore(bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    if url.startswith(("redis://", "rediss://")):
        return RedisBlobStore(url, prefix=settings.blob_redis_prefix, ttl_s=settings.blob_redis_ttl_sec)
    raise ValueError(f"blob_url: unsupported scheme in {url.split(':', 1)[0]!r}")


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file the store lives in (under data_dir unless ``database_url`` names one),
    or None when the store is not SQLite."""
    url = settings.database_url
    return _sqlite_file(url, settings.data_dir) if _is_sqlite(url) else None


def _is_sqlite(database_url: str | None) -> bool:
    return database_url is None or database_url.startswith("sqlite:///")


def _sqlite_file(database_url: str | None, data_dir: Path) -> Path:
    if database_url is None:
        return data_dir / "riskhub.sqlite3"
    # sqlite:///abs/path, or SQLAlchemy's sqlite:////abs/path: the same file, named once
    return Path("/" + database_url.removeprefix("sqlite:///").lstrip("/"))


def _path_of(url: str) -> Path:
    return Path(url.split("://", 1)[1]).absolute()


def build_risk_policy(settings: Settings) -> RiskPolicy:
    """The risk worker's settings; the limits file is read (and checked) once, at start."""
    limits = load_limits(settings.limits_file) if settings.limits_file is not None else LimitBook()
    return RiskPolicy(periods_per_year=settings.periods_per_year, limits=limits)


def build_components(settings: Settings) -> Components:
    """Wire every part from settings; nothing is connected until ``start``."""
    metrics = Metrics()
    store, cache, blobs = build_store(settings), build_cache(settings), build_blobs(settings)
    memory_bus = MemoryBus() if settings.controlbus_brokers is None else None
    publisher: Publisher = memory_bus or KafkaPublisher(
        settings.controlbus_brokers or "", idempotence=settings.controlbus_idempotence
    )
    relay = OutboxRelay(
        store,
        publisher,
        metrics,
        topic=settings.controlbus_topic,
        source=settings.event_source,
        clock=utc_now,
        batch_size=settings.relay_batch_size,
    )
    hub = Hub(
        store=store,
        cache=cache,
        blobs=blobs,
        metrics=metrics,
        limits=HubLimits(settings.contract_rules, settings.inline_cov_threshold, settings.max_event_bytes),
        clock=utc_now,
        on_commit=relay.notify,
    )
    consumer = SnapshotConsumer(
        store=store,
        blobs=blobs,
        workers=load_workers(settings.workers),
        metrics=metrics,
        dlq=publisher,
        risk_policy=build_risk_policy(settings),
        policy=ConsumerPolicy(
            max_attempts=settings.max_attempts,
            retry_backoff_s=settings.retry_backoff_sec,
            dlq_topic=settings.dlq_topic,
            source=settings.event_source,
            allowed_stages=frozenset(settings.allowed_stages),
        ),
        clock=utc_now,
    )
    return Components(
        settings=settings,
        metrics=metrics,
        store=store,
        cache=cache,
        blobs=blobs,
        publisher=publisher,
        hub=hub,
        relay=relay,
        consumer=consumer,
        memory_bus=memory_bus,
    )


def build_kafka_worker(parts: Components) -> KafkaWorker:
    """The consumer-group loop over the components' consumer (``riskhub worker``)."""
    settings = parts.settings
    if settings.controlbus_brokers is None:
        raise ValueError(
            "controlbus_brokers: `riskhub worker` consumes from Kafka; set RISKHUB_CONTROLBUS_BROKERS"
        )
    return KafkaWorker(
        brokers=settings.controlbus_brokers,
        topic=settings.controlbus_topic,
        handle_batch=parts.consumer.handle_batch,
        metrics=parts.metrics,
        group=GroupSettings(
            group_id=settings.consumer_group,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
            retry_backoff_s=settings.retry_backoff_sec,
        ),
    )
