"""ControlBus on Kafka (aiokafka): the publisher used by the relay and the DLQ, and the
``worldservice-risk-hub`` consumer-group loop that feeds records to ``SnapshotConsumer``.

Delivery rules: the producer uses ``acks=all`` (idempotence only where the broker supports it);
the consumer never auto-commits: it commits offset+1 of a record only after the record and every
record before it in its partition were fully handled (dead-lettering included). A record that
could not be handled is sought back to and retried later. Partitions are handled concurrently,
records within a partition strictly in order, so each world's events are handled in POST order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from riskhub.bus import BatchHandler, ReceivedRecord
from riskhub.bus.codec import KafkaRecord
from riskhub.config import (
    CONSUMER_GROUP,
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    EVENT_SOURCE,
    RETRY_BACKOFF_S,
)
from riskhub.errors import NotSentYet, Unavailable
from riskhub.metrics import Metrics

log = logging.getLogger(__name__)

# aiokafka's default record batch (16 KiB) holds one ~14 KB snapshot event, so every event was a
# request of its own (measured: ~630 events/s). Kafka's default message.max.bytes is ~1 MiB.
PRODUCER_MAX_BATCH_BYTES = 512 * 1024


class KafkaPublisher:
    """``Publisher`` on Kafka. Started lazily (and again after a failed start), so a hub whose
    broker is down still starts and accepts snapshots; the outbox holds the events meanwhile."""

    def __init__(
        self,
        brokers: str,
        *,
        idempotence: bool = False,
        request_timeout_ms: int = 10_000,
        client_id: str = EVENT_SOURCE,
    ) -> None:
        self._options: dict[str, Any] = {
            "bootstrap_servers": brokers,
            "acks": "all",
            "enable_idempotence": idempotence,
            "request_timeout_ms": request_timeout_ms,
            "linger_ms": 1,
            "max_batch_size": PRODUCER_MAX_BATCH_BYTES,
            "client_id": client_id,
        }
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._partitioner = DefaultPartitioner()  # what the producer uses for keyed sends

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._options)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send(self, topic: str, record: KafkaRecord) -> None:
        """Send and wait for the broker's acknowledgement (all in-sync replicas)."""
        producer = await self._started()
        await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)

    async def send_in_order(self, topic: str, records: Sequence[KafkaRecord]) -> list[BaseException | None]:
        """Send all at once, without waiting for one acknowledgement before the next send. Each
        key's records go into ONE record batch of its partition, which the broker appends whole
        or not at all, so a key's records can never land out of order or with a gap; the tail of
        a key that does not fit one batch is held back (``NotSentYet``)."""
        producer = await self._started()
        partitions = sorted(await producer.partitions_for(topic))
        batches = _KeyBatches(producer.create_batch)
        for key, indexed in _by_key(records).items():
            batches.add(self._partitioner(key, partitions, partitions), indexed)
        results: list[BaseException | None] = [None] * len(records)
        for index in batches.held_back:
            results[index] = NotSentYet("its key's earlier records fill this send's record batch")
        sent = []
        for partition, batch, indexes in batches.all():
            try:
                sent.append((await producer.send_batch(batch, topic, partition=partition), indexes))
            except Exception as exc:  # not queued (e.g. no buffer space in time): not sent
                for index in indexes:
                    results[index] = exc
        for future, indexes in sent:
            try:
                await future
            except Exception as exc:  # the whole batch failed: none of its records is on the topic
                for index in indexes:
                    results[index] = exc
        return results

    async def ping(self) -> None:
        """Fetch cluster metadata."""
        producer = await self._started()
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)

    async def close(self) -> None:
        """Flush and stop the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def _by_key(records: Sequence[KafkaRecord]) -> dict[bytes | None, list[tuple[int, KafkaRecord]]]:
    by_key: dict[bytes | None, list[tuple[int, KafkaRecord]]] = {}
    for index, record in enumerate(records):
        by_key.setdefault(record.key, []).append((index, record))
    return by_key


class _KeyBatches:
    """Record batches per partition, filled key by key: a key's records never span two batches."""

    def __init__(self, create_batch: Callable[[], BatchBuilder]) -> None:
        self._create = create_batch
        self._open: dict[int, tuple[BatchBuilder, list[int]]] = {}
        self._full: list[tuple[int, BatchBuilder, list[int]]] = []
        self.held_back: list[int] = []

    def add(self, partition: int, records: list[tuple[int, KafkaRecord]]) -> None:
        """Append one key's records in order; start a fresh batch for the key if needed."""
        batch, members = self._batch(partition)
        for position, (index, record) in enumerate(records):
            if _append(batch, record):
                members.append(index)
                continue
            if position == 0 and members:  # the key starts in a fresh batch
                self._full.append((partition, batch, members))
                batch, members = self._open[partition] = (self._create(), [])
                if _append(batch, record):
                    members.append(index)
                    continue
            self.held_back += [i for i, _ in records[position:]]
            return

    def _batch(self, partition: int) -> tuple[BatchBuilder, list[int]]:
        if partition not in self._open:
            self._open[partition] = (self._create(), [])
        return self._open[partition]

    def all(self) -> list[tuple[int, BatchBuilder, list[int]]]:
        """Every non-empty batch with its partition and the indexes of its records."""
        opened = [(partition, batch, members) for partition, (batch, members) in self._open.items()]
        return [item for item in self._full + opened if item[2]]


def _append(batch: BatchBuilder, record: KafkaRecord) -> bool:
    appended = batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
    return appended is not None


async def read_topic(brokers: str, topic: str) -> list[ConsumerRecord]:
    """Every record on ``topic`` now, in order per partition, read without a consumer group
    (none if the topic does not exist). Reads to the end offsets the broker reports and on until
    a fetch comes back empty: Tansu reports a partition's end in record batches, not records
    (seen: 1 after a 5-record batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await start_consumer(consumer, brokers)
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while True:
            batches = await consumer.getmany(timeout_ms=1000 if await _behind(consumer, end) else 300)
            if not batches and not await _behind(consumer, end):
                return records
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def start_consumer(consumer: AIOKafkaConsumer, brokers: str) -> None:
    """Start ``consumer``; a broker that cannot be reached is ``Unavailable`` (and the consumer is
    closed, so nothing is left unclosed behind the error)."""
    try:
        await consumer.start()
    except BaseException as exc:
        await consumer.stop()
        if isinstance(exc, KafkaError):
            raise Unavailable(f"kafka at {brokers}: {exc}") from exc
        raise


async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, end_offset in end.items():
        if await consumer.position(tp) < end_offset:
            return True
    return False


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    with contextlib.suppress(KafkaError):
        if topic not in await consumer.topics():
            return []
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """Consumer-group settings (lower timeouts join faster in tests)."""

    group_id: str = CONSUMER_GROUP
    session_timeout_ms: int = CONSUMER_SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = CONSUMER_HEARTBEAT_INTERVAL_MS
    max_poll_interval_ms: int = 300_000
    max_batch: int = 500
    retry_backoff_s: float = RETRY_BACKOFF_S  # pause before fetching again when a record is retried
    # How long the broker may hold a fetch open while the partition is empty (aiokafka: 500 ms).
    # It bounds the delay from "event on the topic" to "worker sees it" for brokers that do not
    # answer a waiting fetch as soon as data arrives (Tansu); 50 ms costs ~20 idle fetches/s.
    fetch_max_wait_ms: int = 50


class KafkaWorker:
    """Feeds a consumer group's records to a batch handler (``SnapshotConsumer.handle_batch``)."""

    def __init__(
        self,
        *,
        brokers: str,
        topic: str,
        handle_batch: BatchHandler,
        metrics: Metrics,
        group: GroupSettings = GroupSettings(),
    ) -> None:
        self._brokers, self._topic = brokers, topic
        self._handle_batch = handle_batch
        self._metrics = metrics
        self._group = group
        self._kafka: AIOKafkaConsumer | None = None
        # Held while a fetched batch is handled and committed; revocation waits for it.
        self._batch_lock = asyncio.Lock()
        self.handled = 0

    async def run(self, *, stop: asyncio.Event | None = None, max_records: int | None = None) -> None:
        """Consume until ``stop`` is set or ``max_records`` records were handled."""
        kafka = AIOKafkaConsumer(
            bootstrap_servers=self._brokers,
            group_id=self._group.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._group.session_timeout_ms,
            heartbeat_interval_ms=self._group.heartbeat_interval_ms,
            max_poll_interval_ms=self._group.max_poll_interval_ms,
            fetch_max_wait_ms=self._group.fetch_max_wait_ms,
        )
        kafka.subscribe([self._topic], listener=_CommitOnRevoke(self))
        self._kafka = kafka
        await start_consumer(kafka, self._brokers)
        try:
            while not (stop is not None and stop.is_set()):
                if max_records is not None and self.handled >= max_records:
                    return
                batches = await kafka.getmany(timeout_ms=200, max_records=self._group.max_batch)
                if batches:
                    await self._handle_batches(kafka, batches)
        finally:
            self._kafka = None
            await kafka.stop()

    async def _handle_batches(
        self, kafka: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        async with self._batch_lock:
            positions = await asyncio.gather(
                *(self._handle_partition(kafka, tp, records) for tp, records in batches.items())
            )
            offsets = {
                tp: offset for tp, offset in zip(batches, positions, strict=True) if offset is not None
            }
            await self._commit(kafka, offsets)
            await self._update_lag(kafka, list(batches))
        if any(len(records) and offsets.get(tp) != records[-1].offset + 1 for tp, records in batches.items()):
            await asyncio.sleep(self._group.retry_backoff_s)  # something is retried: do not spin

    async def _handle_partition(
        self, kafka: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> int | None:
        """Handle records in order; return the offset to commit (next to read), if any moved.
        What was not handled is sought back to and retried on a later fetch."""
        try:
            flags = await self._handle_batch([_received(record) for record in records])
        except Exception as exc:  # e.g. the store is down: nothing of the batch is handled
            log.warning("batch %s/%d@%d not handled: %s", tp.topic, tp.partition, records[0].offset, exc)
            flags = [False] * len(records)
        handled = flags.index(False) if False in flags else len(flags)  # the committable prefix
        self.handled += handled
        if handled < len(records):
            kafka.seek(tp, records[handled].offset)
        return records[handled - 1].offset + 1 if handled else None

    async def _commit(self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await kafka.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: the new owner re-reads these records and the
            # processed-key store turns them into dedupes. Nothing is lost or doubled.
            log.warning("commit failed (%s); records will be redelivered and deduplicated", exc)

    async def _update_lag(self, kafka: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            highwater = kafka.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                position = await kafka.position(tp)
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(highwater - position, 0)
                )

    async def on_revoke(self) -> None:
        """Wait until the batch in flight is handled and committed before giving partitions up."""
        async with self._batch_lock:
            pass


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: KafkaWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._worker.on_revoke()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("assigned partitions: %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


def _received(record: ConsumerRecord) -> ReceivedRecord:
    return ReceivedRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=list(record.headers or ()),
    )
