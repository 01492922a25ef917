"""Outbox relay: publishes committed outbox events to the bus, in outbox order per world.

An event is marked published only after the bus acknowledged it. If the bus is down, events stay
in the outbox (snapshots keep being accepted) and go out when it is back, with backoff between
failing passes. Within a pass, once a world's event fails, that world's later events wait for
the next pass, so per-world order on the topic follows outbox (POST) order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from riskhub.bus import Publisher
from riskhub.bus.codec import SerializedJson, encode_event
from riskhub.metrics import Metrics
from riskhub.store import OutboxEvent, SnapshotStore

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
        batch_size: int = 200,
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

    def notify(self) -> None:
        """Wake the relay: a new event was committed."""
        self._wakeup.set()

    async def publish_pending(self) -> tuple[int, int]:
        """One pass over pending events; returns (published, failed). Worlds are published
        concurrently, each world's events one after the other: an event is sent only once the
        previous event of its world was acknowledged, and a failure stops that world's pass."""
        async with self._store.claim_outbox(self._batch_size) as batch:
            by_world: dict[str, list[OutboxEvent]] = defaultdict(list)
            for event in batch.events:
                by_world[event.world_id].append(event)
            outcomes = await asyncio.gather(*(self._publish_world(events) for events in by_world.values()))
            published = [event_id for sent, _ in outcomes for event_id in sent]
            failures = [failure for _, failure in outcomes if failure is not None]
            for event_id, error in failures:  # one connection per batch: marks go one by one
                await batch.mark_failed(event_id, error)
            await batch.mark_published(published)
        self._metrics.outbox_published.inc(len(published))
        return len(published), len(failures)

    async def _publish_world(self, events: list[OutboxEvent]) -> tuple[list[int], tuple[int, str] | None]:
        sent: list[int] = []
        for event in events:
            error = await self._publish(event)
            if error is not None:
                return sent, (event.id, error)
            sent.append(event.id)
        return sent, None

    async def _publish(self, event: OutboxEvent) -> str | None:
        """Send one event; the error text if the bus did not acknowledge it."""
        record = encode_event(
            event_id=event.event_id,
            event_type=event.event_type,
            source=self._source,
            data=SerializedJson(event.data),
            key=event.world_id,
            time=event.created_at,
            correlation_id=event.correlation_id,
        )
        try:
            await self._publisher.send(self._topic, record)
        except Exception as exc:  # any bus failure: keep the event, retry on a later pass
            self._metrics.outbox_publish_errors.inc()
            log.warning("publish of outbox event %s failed: %s", event.id, exc)
            return f"{type(exc).__name__}: {exc}"
        self._metrics.relay_latency.observe((self._clock() - event.created_at).total_seconds())
        return None

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
            elif published < self._batch_size:
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
