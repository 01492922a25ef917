"""Every Prometheus metric of riskhub, defined once, in a registry per hub instance.

Label values are bounded: ``stage`` is one of the allowed stages or ``unknown``; ``world_id`` only
takes ids of accepted snapshots (validated by the contract); reasons and routes are fixed sets.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# `*_created` series double the exposition and nobody alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

UNKNOWN_STAGE = "unknown"
# The figures of the risk report exported per world/stage (names as in the risk report).
RISK_GAUGES = {
    "sigma_annual": "Annualized portfolio sigma of the latest computed snapshot",
    "var_99": "Parametric 99% VaR (per period) of the latest computed snapshot",
    "es_975": "Parametric 97.5% expected shortfall (per period) of the latest computed snapshot",
}
WORLD_STAGE = ("world_id", "stage")


def stage_label(stage: str | None, allowed: Iterable[str] = ()) -> str:
    """A bounded label value for a stage (``unknown`` when absent or not allowed)."""
    if stage is None:
        return UNKNOWN_STAGE
    return stage if stage in allowed else UNKNOWN_STAGE


@dataclass(eq=False)
class FreshnessTracker(Collector):
    """Age of the latest snapshot per world/stage, computed at scrape time so it keeps rising
    when nothing arrives. Two ages: from ``as_of`` and from when the hub received it."""

    latest: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def observe(self, world_id: str, stage: str, as_of: datetime, received_at: datetime) -> None:
        """Remember a snapshot if it is the newest seen for its world/stage."""
        key = (world_id, stage)
        seen = (as_of.timestamp(), received_at.timestamp())
        if key not in self.latest or seen > self.latest[key]:
            self.latest[key] = seen

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Ages in seconds, as of now."""
        now = time.time()
        as_of_age = GaugeMetricFamily(
            "risk_hub_snapshot_age_seconds",
            "Seconds since the as_of of the latest snapshot",
            labels=list(WORLD_STAGE),
        )
        received_age = GaugeMetricFamily(
            "risk_hub_snapshot_received_age_seconds",
            "Seconds since the hub received the latest snapshot",
            labels=list(WORLD_STAGE),
        )
        for (world_id, stage), (as_of, received) in list(self.latest.items()):
            as_of_age.add_metric([world_id, stage], now - as_of)
            received_age.add_metric([world_id, stage], now - received)
        yield as_of_age
        yield received_age


WINDOW_KINDS = ("dedupe", "expired", "retry", "dlq")
Totals = dict[tuple[str, str, str], float]  # (kind, world_id, stage) -> count


@dataclass(eq=False)
class RecentIncrease:
    """The last hour's increase of the queue counters per world/stage, from per-minute samples of
    their cumulative values (taken when asked, at most one a minute, and once at start). Counts are
    this process's: in production the dashboard sums every process."""

    window_s: float = 3600.0
    every_s: float = 60.0
    samples: deque[tuple[float, Totals]] = field(default_factory=deque)

    def increase(
        self, totals: dict[tuple[str, str, str], float], now: float
    ) -> dict[tuple[str, str, str], float]:
        """``totals`` (kind, world, stage) minus the oldest sample within the window."""
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()
        if not self.samples or now - self.samples[-1][0] >= self.every_s:
            self.samples.append((now, dict(totals)))
        base = self.samples[0][1] if self.samples[0][0] <= now else {}
        return {key: value - base.get(key, 0.0) for key, value in totals.items()}


class Metrics:
    """The hub's metrics; one instance per app so tests never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The six counters of the queue standards, by world and stage.
        self.processed = Counter(
            "risk_hub_snapshot_processed", "Events handled by the workers", WORLD_STAGE, registry=r
        )
        self.failed = Counter(
            "risk_hub_snapshot_failed", "Events that ran out of attempts", WORLD_STAGE, registry=r
        )
        self.retry = Counter(
            "risk_hub_snapshot_retry", "Handler re-calls after a failure", WORLD_STAGE, registry=r
        )
        self.dlq = Counter(
            "risk_hub_snapshot_dlq", "Events acknowledged by the DLQ topic", WORLD_STAGE, registry=r
        )
        self.dedupe = Counter(
            "risk_hub_snapshot_dedupe",
            "Duplicates absorbed (idempotent POST retries and duplicate events)",
            WORLD_STAGE,
            registry=r,
        )
        self.expired = Counter(
            "risk_hub_snapshot_expired",
            "Expired snapshots dropped by the consumer",
            WORLD_STAGE,
            registry=r,
        )
        self.accepted = Counter(
            "risk_hub_snapshot_accepted", "Snapshots stored (201)", WORLD_STAGE, registry=r
        )
        self._started: set[tuple[str, str]] = set()
        self.producer_violations = Counter(
            "risk_hub_producer_violations",
            "Rejected or non-conforming writes by reason",
            ["reason", "stage"],
            registry=r,
        )
        self.http_responses = Counter(
            "risk_hub_http_responses", "HTTP responses", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "risk_hub_http_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.cache_requests = Counter(
            "risk_hub_cache_requests", "Latest-cache lookups", ["result"], registry=r
        )
        self.blob_errors = Counter(
            "risk_hub_blob_errors", "Blob store failures", ["operation", "kind"], registry=r
        )
        self.outbox_backlog = Gauge(
            "risk_hub_outbox_backlog", "Outbox events not yet acknowledged by the bus", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "risk_hub_outbox_oldest_age_seconds",
            "Age of the oldest unsent outbox event",
            registry=r,
        )
        self.outbox_published = Counter(
            "risk_hub_outbox_published", "Outbox events acknowledged by the bus", registry=r
        )
        self.outbox_publish_errors = Counter(
            "risk_hub_outbox_publish_errors", "Failed publish attempts", registry=r
        )
        self.relay_latency = Histogram(
            "risk_hub_outbox_commit_to_publish_seconds",
            "Time from snapshot commit to bus acknowledgement",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.consumer_lag = Gauge(
            "risk_hub_consumer_lag",
            "Records behind the partition end",
            ["topic", "partition"],
            registry=r,
        )
        self.freshness = FreshnessTracker()
        r.register(self.freshness)
        self.recent = RecentIncrease()
        self.recent.samples.append((time.time(), {}))  # every counter starts at 0 with the process
        # Risk figures of the newest computed snapshot per world/stage (see observe_risk).
        self.risk_figures = {
            figure: Gauge(f"risk_hub_risk_{figure}", help_text, WORLD_STAGE, registry=r)
            for figure, help_text in RISK_GAUGES.items()
        }
        self._risk_as_of: dict[tuple[str, str], datetime] = {}
        self._last_active: dict[tuple[str, str], float] = {}
        self._breach_metrics: dict[tuple[str, str], set[str]] = {}
        self.limit_breaches = Counter(
            "risk_hub_limit_breaches",
            "Limit breaches (severity breach) of computed snapshots",
            [*WORLD_STAGE, "metric"],
            registry=r,
        )
        self.worker_seconds = Histogram(
            "risk_hub_worker_duration_seconds",
            "Time one worker spent on one event",
            ["worker"],
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )

    def start_series(self, world_id: str, stage: str) -> None:
        """The six counters of a world/stage, at 0 from its first snapshot on: an alert on
        ``increase(...)`` then sees the first failure, retry, DLQ or expiry too. Marks the
        world/stage active (see ``evict_idle``)."""
        self._last_active[(world_id, stage)] = time.monotonic()
        if (world_id, stage) in self._started:
            return
        self._started.add((world_id, stage))
        for counter in (self.processed, self.failed, self.retry, self.dlq, self.dedupe, self.expired):
            counter.labels(world_id, stage)

    def observe_risk(self, world_id: str, stage: str, as_of: datetime, figures: dict[str, object]) -> None:
        """Set the risk gauges of a world/stage from a newly computed snapshot, unless a newer
        one (greater ``as_of``) already set them; a figure that could not be had is NaN."""
        key = (world_id, stage)
        if key in self._risk_as_of and as_of < self._risk_as_of[key]:
            return
        self._risk_as_of[key] = as_of
        for figure, gauge in self.risk_figures.items():
            value = figures.get(figure)
            gauge.labels(world_id, stage).set(value if isinstance(value, int | float) else math.nan)

    def queue_totals(self) -> Totals:
        """Cumulative dedupe / expired / retry / DLQ counts by (kind, world, stage)."""
        totals: Totals = {}
        for kind in WINDOW_KINDS:
            counter: Counter = getattr(self, kind)
            for family in counter.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        totals[(kind, sample.labels["world_id"], sample.labels["stage"])] = sample.value
        return totals

    def count_breach(self, world_id: str, stage: str, metric: str) -> None:
        """One more limit breach of a world/stage's ``metric``."""
        self._breach_metrics.setdefault((world_id, stage), set()).add(metric)
        self.limit_breaches.labels(world_id, stage, metric).inc()

    def evict_idle(self, idle_s: float) -> list[tuple[str, str]]:
        """Drop every series and remembered value of the world/stages without a snapshot or an
        event for ``idle_s`` seconds (returned): their ids would otherwise stay in memory and in
        every scrape for good. A world that comes back starts its series at 0 again."""
        limit = time.monotonic() - idle_s
        idle = [key for key, seen in self._last_active.items() if seen < limit]
        per_world = (
            self.processed,
            self.failed,
            self.retry,
            self.dlq,
            self.dedupe,
            self.expired,
            self.accepted,
        )
        for key in idle:
            del self._last_active[key]
            self._started.discard(key)
            self._risk_as_of.pop(key, None)
            self.freshness.latest.pop(key, None)
            for metric in (*per_world, *self.risk_figures.values()):
                with contextlib.suppress(KeyError):
                    metric.remove(*key)
            for figure in self._breach_metrics.pop(key, set()):
                with contextlib.suppress(KeyError):
                    self.limit_breaches.remove(*key, figure)
        return idle
