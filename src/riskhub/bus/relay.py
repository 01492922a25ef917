"""Outbox relay: publishes committed outbox events to the bus, in outbox order per world.

An event is marked published only after the bus acknowledged it. If the bus is down, events stay
in the outbox (snapshots keep being accepted) and go out when it is back, with backoff between
failing passes. A pass is sent at once; the bus guarantees that per key what it acknowledges is
a prefix in order (on Kafka: a world's events of a pass share one record batch, appended whole
or not at all), so per-world order on the topic follows outbox (POST) order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from riskhub.bus import Publisher
from riskhub.bus.codec import KafkaRecord, SerializedJson, encode_event
from riskhub.config import RELAY_BATCH_SIZE
from riskhub.errors import NotSentYet
from riskhub.metrics import Metrics
from riskhub.model import OutboxEvent
from riskhub.store import SnapshotStore

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class OutboxRelay:
    """Moves outbox rows to the bus."""

    def __init__(
        self,
        store: SnapshotStore,
        publisher: Publisher,
        metrics: Metrics,
        *,
        topic: str,
        source: str,
        clock: Callable[[], datetime],
        batch_size: int = RELAY_BATCH_SIZE,
        idle_wait_s: float = 1.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._topic = topic
        self._source = source
        self._clock = clock
        self._batch_size = batch_size
        self._idle_wait_s = idle_wait_s
        self._wakeup = asyncio.Event()
        self.held_back = False  # the last pass left events for the next one (not failures)

    def notify(self) -> None:
        """Wake the relay: a new event was committed."""
        self._wakeup.set()

    async def publish_pending(self) -> tuple[int, int]:
        """One pass over pending events; returns (published, failed). The pass goes to the bus
        in one ``send_in_order`` (no waiting for one acknowledgement before the next send); per
        world, the events marked published are those before its first unsent one."""
        async with self._store.claim_outbox(self._batch_size) as batch:
            records = [self._record(event) for event in batch.events]
            try:
                results = await self._publisher.send_in_order(self._topic, records) if records else []
            except Exception as exc:  # e.g. the bus is unreachable: nothing of the pass was sent
                results = [exc] * len(records)
            published, failures = self._settle(batch.events, results)
            self.held_back = any(isinstance(result, NotSentYet) for result in results)
            for event_id, error in failures:  # one connection per batch: marks go one by one
                await batch.mark_failed(event_id, error)
            await batch.mark_published([event.id for event in published])
        now = self._clock()
        for event in published:
            self._metrics.relay_latency.observe((now - event.created_at).total_seconds())
        self._metrics.outbox_published.inc(len(published))
        return len(published), len(failures)

    def _record(self, event: OutboxEvent) -> KafkaRecord:
        return encode_event(
            event_id=event.event_id,
            event_type=event.event_type,
            source=self._source,
            data=SerializedJson(event.data),
            key=event.world_id,
            time=event.created_at,
            correlation_id=event.correlation_id,
        )

    def _settle(
        self, events: list[OutboxEvent], results: list[BaseException | None]
    ) -> tuple[list[OutboxEvent], list[tuple[int, str]]]:
        """Published: each world's events up to its first unsent one. Failed: that event, with
        why (an event merely held back for the next pass is no failure)."""
        published: list[OutboxEvent] = []
        failures: list[tuple[int, str]] = []
        stopped: set[str] = set()
        for event, error in zip(events, results, strict=True):
            if event.world_id in stopped:
                continue
            if error is None:
                published.append(event)
                continue
            stopped.add(event.world_id)
            if not isinstance(error, NotSentYet):
                self._metrics.outbox_publish_errors.inc()
                log.warning("publish of outbox event %s failed: %s", event.id, error)
                failures.append((event.id, f"{type(error).__name__}: {error}"))
        return published, failures

    async def run(self, *, until_idle: bool = False) -> None:
        """Publish forever (or until nothing is pending), sleeping when idle, backing off on errors."""
        failures = 0
        while True:
            self._wakeup.clear()
            try:
                published, failed = await self.publish_pending()
                await self.refresh_backlog_metrics()
            except Exception:
                log.exception("outbox relay pass failed")
                published, failed = 0, 1
            if until_idle and published == 0 and failed == 0:
                return
            failures = failures + 1 if failed else 0
            if failures:
                await asyncio.sleep(min(0.1 * 2**failures, MAX_BACKOFF_S))
            elif published < self._batch_size and not self.held_back:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._idle_wait_s)

    async def refresh_backlog_metrics(self) -> None:
        """Update the backlog gauges from the store."""
        backlog = await self._store.outbox_backlog()
        self._metrics.outbox_backlog.set(backlog.pending)
        age = 0.0
        if backlog.oldest_created_at is not None:
            age = (self._clock() - backlog.oldest_created_at).total_seconds()
        self._metrics.outbox_oldest_age.set(max(age, 0.0))
