"""The ``worldservice-risk-hub`` consumer logic, independent of the bus that feeds it.

Per record: decode -> filter on type -> drop if expired -> dedupe -> run workers (with retries)
-> record the outcome. ``handle`` returns only when the record is fully handled, i.e. its offset
may be committed; it raises ``NotHandled`` when it must not be (DLQ disabled or its send failed).
Exactly-once effects: the processed key and the workers' rows are written in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from riskhub.blobs import BlobStore
from riskhub.bus import Publisher, ReceivedRecord
from riskhub.bus.codec import (
    EVENT_TYPE,
    Event,
    UndecodableEvent,
    decode_record,
    encode_dlq_event,
)
from riskhub.canonical import loads_exact
from riskhub.contract import OFFLOADABLE_PARTS, dedupe_key, parse_timestamp
from riskhub.errors import ContractError
from riskhub.metrics import Metrics, stage_label
from riskhub.store import OUTCOME_DLQ, OUTCOME_PROCESSED, SnapshotStore, WorkerResult
from riskhub.workers import SnapshotView, Worker

log = logging.getLogger(__name__)


class NotHandled(Exception):
    """The record could not be handled nor dead-lettered: do not commit its offset."""


@dataclass(frozen=True, slots=True)
class ConsumerPolicy:
    """Retry and dead-letter settings (queue standards defaults)."""

    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    dlq_topic: str | None = None
    source: str = "riskhub"
    allowed_stages: frozenset[str] = frozenset({"backtest", "paper", "live"})


class SnapshotConsumer:
    """Handles ``risk_snapshot_updated`` records."""

    def __init__(
        self,
        *,
        store: SnapshotStore,
        blobs: BlobStore,
        workers: Sequence[Worker],
        metrics: Metrics,
        dlq: Publisher | None,
        policy: ConsumerPolicy,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._workers = workers
        self._metrics = metrics
        self._dlq = dlq
        self._policy = policy
        self.clock = clock
        self.sleep = sleep  # injectable: tests record the backoff

    async def handle(self, record: ReceivedRecord) -> None:
        """Handle one record completely, or raise ``NotHandled``."""
        try:
            event = decode_record(record.value, record.headers, record.key)
        except UndecodableEvent as exc:
            await self._dead_letter(record, None, exc, attempts=0, labels=("unknown", "unknown"))
            return
        if event.type != EVENT_TYPE:
            return
        labels = self._labels(event.data)
        if self._is_expired(event.data):
            self._metrics.expired.labels(*labels).inc()
            return
        key = self._dedupe_key(event)
        if await self._store.processed_outcome(key) == OUTCOME_PROCESSED:
            self._metrics.dedupe.labels(*labels).inc()
            return
        await self._process_with_retries(record, event, key, labels)

    async def _process_with_retries(
        self, record: ReceivedRecord, event: Event, key: str, labels: tuple[str, str]
    ) -> None:
        attempt = 1
        while True:
            try:
                results = await self._run_workers(event.data)
                break
            except Exception as exc:  # a worker failure of any kind is retried, then DLQ'd
                if attempt >= self._policy.max_attempts:
                    self._metrics.failed.labels(*labels).inc()
                    await self._dead_letter(record, event, exc, attempts=attempt, labels=labels)
                    await self._store.record_outcome(key, OUTCOME_DLQ, [])
                    return
                log.info("attempt %d of %s failed: %s", attempt, key, exc)
                await self.sleep(self._policy.retry_backoff_s * 2 ** (attempt - 1))
                attempt += 1
                self._metrics.retry.labels(*labels).inc()
        if await self._store.record_outcome(key, OUTCOME_PROCESSED, results):
            self._metrics.processed.labels(*labels).inc()
        else:
            self._metrics.dedupe.labels(*labels).inc()

    async def _run_workers(self, data: dict[str, Any]) -> list[WorkerResult]:
        view = SnapshotView(stored=data, parts=await self._resolve_parts(data))
        return [WorkerResult(worker.name, await worker.run(view)) for worker in self._workers]

    async def _resolve_parts(self, data: dict[str, Any]) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        for part in OFFLOADABLE_PARTS:
            if part in data:
                parts[part] = data[part]
            elif isinstance(data.get(f"{part}_ref"), str):
                parts[part] = loads_exact(await self._blobs.get(data[f"{part}_ref"]))
        return parts

    async def _dead_letter(
        self,
        record: ReceivedRecord,
        event: Event | None,
        error: BaseException,
        *,
        attempts: int,
        labels: tuple[str, str],
    ) -> None:
        if self._policy.dlq_topic is None or self._dlq is None:
            raise NotHandled(f"DLQ disabled; {record.topic}/{record.partition}@{record.offset} kept")
        dlq_record = encode_dlq_event(
            original_value=record.value,
            original=event,
            error=error,
            error_type=type(error).__name__,
            attempts=attempts,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source=self._policy.source,
            key=record.key,
            now=self.clock(),
        )
        try:
            await self._dlq.send(self._policy.dlq_topic, dlq_record)
        except Exception as exc:
            raise NotHandled(f"DLQ send failed: {exc}") from exc
        self._metrics.dlq.labels(*labels).inc()

    def _labels(self, data: dict[str, Any]) -> tuple[str, str]:
        provenance = data.get("provenance")
        stage = provenance.get("stage") if isinstance(provenance, dict) else None
        world_id = data.get("world_id")
        return (
            world_id if isinstance(world_id, str) else "unknown",
            stage_label(stage, self._policy.allowed_stages),
        )

    def _is_expired(self, data: dict[str, Any]) -> bool:
        created_at, ttl = data.get("created_at"), data.get("ttl_sec")
        if not isinstance(created_at, str) or type(ttl) is not int:
            return False
        try:
            expires_at = parse_timestamp(created_at, "created_at") + timedelta(seconds=ttl)
        except ContractError:
            return False
        return self.clock() >= expires_at

    @staticmethod
    def _dedupe_key(event: Event) -> str:
        data = event.data
        key = data.get("idempotency_key")
        if isinstance(key, str) and key:
            return key
        provenance = data.get("provenance") or {}
        return dedupe_key(
            str(data.get("world_id", "")),
            str(data.get("version", "")),
            str(data.get("hash", "")),
            str(provenance.get("actor", "")),
            provenance.get("stage"),
        )
