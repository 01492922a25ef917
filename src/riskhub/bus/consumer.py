"""The ``worldservice-risk-hub`` consumer logic, independent of the bus that feeds it.

Per record: decode -> filter on type -> drop if expired -> dedupe -> run workers (with retries)
-> record the outcome. Records come in batches (a Kafka fetch, an in-process relay pass):
``handle_batch`` returns how many of them, in order, are fully handled, i.e. may be committed;
a record stops the batch when it cannot be (DLQ disabled or its send failed). Exactly-once
effects: the processed keys and the workers' rows are written in one transaction per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter

from riskhub.blobs import BlobStore, read_part
from riskhub.bus import Publisher, ReceivedRecord
from riskhub.bus.codec import (
    Event,
    decode_record,
    encode_dlq_event,
)
from riskhub.config import DEFAULT_STAGES, EVENT_SOURCE, MAX_ATTEMPTS, RETRY_BACKOFF_S
from riskhub.contract import (
    OFFLOADABLE_PARTS,
    check_stored_text,
    is_world_id,
    parse_timestamp,
    risk_snapshot_dedupe_key,
)
from riskhub.errors import ContractError, NotHandled, UndecodableEvent
from riskhub.events import SNAPSHOT_UPDATED
from riskhub.metrics import Metrics, stage_label
from riskhub.model import OUTCOME_DLQ, OUTCOME_PROCESSED, Outcome, WorkerResult
from riskhub.risk.results import RISK_WORKER
from riskhub.risk.workers import RiskPolicy, SnapshotView, Worker, WorkerOutput
from riskhub.store import SnapshotStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerPolicy:
    """Retry and dead-letter settings (queue standards defaults)."""

    max_attempts: int = MAX_ATTEMPTS
    retry_backoff_s: float = RETRY_BACKOFF_S
    dlq_topic: str | None = None
    source: str = EVENT_SOURCE
    allowed_stages: frozenset[str] = DEFAULT_STAGES


UNKNOWN_LABELS = ("unknown", "unknown")
MAX_ERROR_CHARS = 2000  # of a dead-lettered key's error, as the results API shows it
# What event data no producer of ours sends raises (a key no store can hold: ContractError).
_UNUSABLE_DATA = (TypeError, ValueError, AttributeError, ContractError)


@dataclass(frozen=True, slots=True)
class _Item:
    """A record decoded: its event (an error if undecodable, None if of another type) and key."""

    record: ReceivedRecord
    event: Event | UndecodableEvent | None
    key: str | None = None

    @property
    def position(self) -> tuple[str, int, int]:
        return self.record.topic, self.record.partition, self.record.offset


class _BatchState:
    """Outcomes to record and counters to move once the batch's transaction committed."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known  # dedupe key -> outcome, as stored or as decided earlier in the batch
        self.outcomes: list[Outcome] = []
        self.labels: list[tuple[str, str]] = []
        self.as_of: list[datetime | None] = []
        self.counts: list[tuple[Counter, tuple[str, str]]] = []

    def add(self, outcome: Outcome, labels: tuple[str, str], as_of: datetime | None) -> None:
        self.known[outcome.dedupe_key] = outcome.outcome
        self.outcomes.append(outcome)
        self.labels.append(labels)
        self.as_of.append(as_of)


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
        risk_policy: RiskPolicy = RiskPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._workers = workers
        self._metrics = metrics
        self._dlq = dlq
        self._policy = policy
        self._risk_policy = risk_policy
        self.clock = clock
        self.sleep = sleep  # injectable: tests record the backoff

    async def handle_batch(self, records: Sequence[ReceivedRecord], *, per_key: bool = False) -> list[bool]:
        """Handle records in order; return per record whether it is fully handled. A record that
        cannot be handled (DLQ off or its send failed, or a bug on its data) stops the rest of the
        batch: on Kafka only a prefix can be committed. With ``per_key`` (the in-process bus, no
        offsets) it stops only the later records of its key (world), so one stuck world does not
        hold the others. One dedupe query and one outcome transaction serve the whole batch; the
        processed / dedupe / expired counters move only once that transaction committed. If it
        fails, the exception propagates and nothing of the batch is handled (redelivery dedupes)."""
        items = [self._decode(record) for record in records]
        keys = [item.key for item in items if item.key is not None]
        batch = _BatchState(await self._store.processed_outcomes(keys) if keys else {})
        handled: list[bool] = []
        stopped: set[bytes | None] = set()
        for item in items:
            if item.record.key in stopped or (stopped and not per_key):
                handled.append(False)
                continue
            try:
                await self._handle_one(item, batch)
            except Exception as exc:  # NotHandled, or a bug on this record's data: retried later
                log.warning(
                    "%s/%d@%d not handled: %s", *item.position, exc, exc_info=not isinstance(exc, NotHandled)
                )
                stopped.add(item.record.key)
                handled.append(False)
                continue
            handled.append(True)
        recorded = await self._store.record_outcomes(batch.outcomes) if batch.outcomes else []
        for outcome, labels, as_of, new in zip(
            batch.outcomes, batch.labels, batch.as_of, recorded, strict=True
        ):
            if outcome.outcome == OUTCOME_PROCESSED:
                counter = self._metrics.processed if new else self._metrics.dedupe
                counter.labels(*labels).inc()
                if new:
                    self._observe_risk(outcome, labels, as_of)
        for counter, labels in batch.counts:
            counter.labels(*labels).inc()
        return handled

    def _decode(self, record: ReceivedRecord) -> _Item:
        try:
            event = decode_record(record.value, record.headers, record.key)
        except UndecodableEvent as exc:
            return _Item(record, exc)
        if event.type != SNAPSHOT_UPDATED:
            return _Item(record, None)
        try:
            return _Item(record, event, self._dedupe_key(event))
        except _UNUSABLE_DATA as exc:
            return _Item(record, UndecodableEvent(f"unusable event data: {type(exc).__name__}: {exc}"))

    async def _handle_one(self, item: _Item, batch: _BatchState) -> None:
        if isinstance(item.event, UndecodableEvent):
            await self._dead_letter(item.record, None, item.event, attempts=0, labels=UNKNOWN_LABELS)
            return
        if item.event is None or item.key is None:  # another event type: not ours
            return
        labels = self._labels(item.event.data)
        self._metrics.start_series(*labels)
        if self._is_expired(item.event.data):
            batch.counts.append((self._metrics.expired, labels))
        elif batch.known.get(item.key) == OUTCOME_PROCESSED:
            batch.counts.append((self._metrics.dedupe, labels))
        else:
            outcome = await self._process_with_retries(item.record, item.event, item.key, labels)
            batch.add(outcome, labels, _as_of(item.event.data))

    async def _process_with_retries(
        self, record: ReceivedRecord, event: Event, key: str, labels: tuple[str, str]
    ) -> Outcome:
        attempt = 1
        while True:
            try:
                return Outcome(key, OUTCOME_PROCESSED, await self._run_workers(event))
            except Exception as exc:  # a worker failure of any kind is retried, then DLQ'd
                if attempt >= self._policy.max_attempts:
                    self._metrics.failed.labels(*labels).inc()
                    await self._dead_letter(record, event, exc, attempts=attempt, labels=labels)
                    return Outcome(key, OUTCOME_DLQ, error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
                log.info("attempt %d of %s failed: %s", attempt, key, exc)
                await self.sleep(self._policy.retry_backoff_s * 2 ** (attempt - 1))
                attempt += 1
                self._metrics.retry.labels(*labels).inc()

    async def _run_workers(self, event: Event) -> list[WorkerResult]:
        data = event.data
        view = SnapshotView(data, await self._resolve_parts(data), event.correlation_id, self._risk_policy)
        return [await self._run_worker(worker, view) for worker in self._workers]

    async def _run_worker(self, worker: Worker, view: SnapshotView) -> WorkerResult:
        started = time.perf_counter()
        output = await worker.run(view)
        self._metrics.worker_seconds.labels(worker.name).observe(time.perf_counter() - started)
        if isinstance(output, WorkerOutput):
            return WorkerResult(worker.name, output.result, output.events)
        return WorkerResult(worker.name, output)

    async def _resolve_parts(self, data: dict[str, Any]) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        for part in OFFLOADABLE_PARTS:
            if part in data:
                parts[part] = data[part]
            elif isinstance(data.get(f"{part}_ref"), str):
                parts[part] = await read_part(self._blobs, data[f"{part}_ref"])
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

    def _observe_risk(self, outcome: Outcome, labels: tuple[str, str], as_of: datetime | None) -> None:
        """The risk gauges and breach counts of a newly recorded outcome."""
        row: dict[str, Any] | None = next(
            (r.result for r in outcome.results if r.worker == RISK_WORKER), None
        )
        if row is None or as_of is None:
            return
        self._metrics.observe_risk(*labels, as_of, row.get("figures") or {})
        for breach in row.get("breaches") or ():
            if breach.get("severity") == "breach":
                self._metrics.count_breach(*labels, str(breach.get("metric", "unknown")))

    def _labels(self, data: dict[str, Any]) -> tuple[str, str]:
        provenance = data.get("provenance")
        stage = provenance.get("stage") if isinstance(provenance, dict) else None
        world_id = data.get("world_id")
        return (
            world_id if isinstance(world_id, str) and is_world_id(world_id) else "unknown",
            stage_label(stage, self._policy.allowed_stages),
        )

    def _is_expired(self, data: dict[str, Any]) -> bool:
        created_at, ttl = data.get("created_at"), data.get("ttl_sec")
        if not isinstance(created_at, str) or type(ttl) is not int:
            return False
        try:
            expires_at = parse_timestamp(created_at, "created_at") + timedelta(seconds=ttl)
        except (ContractError, OverflowError):  # no valid expiry (or beyond year 9999): keep it
            return False
        return self.clock() >= expires_at

    @staticmethod
    def _dedupe_key(event: Event) -> str:
        """The event's key, which the processed-key store must be able to hold."""
        data = event.data
        key = data.get("idempotency_key")
        if not (isinstance(key, str) and key):
            key = risk_snapshot_dedupe_key(data)
        return check_stored_text(key, "idempotency_key")


def _as_of(data: dict[str, Any]) -> datetime | None:
    """The snapshot's ``as_of``, if the event carries a valid one."""
    value = data.get("as_of")
    try:
        return parse_timestamp(value, "as_of") if isinstance(value, str) else None
    except ContractError:
        return None
