"""Risk workers run by the consumer on each new snapshot event.

A worker's only effects are the row it returns and the events that row announces: the consumer
stores both with the processed key in one transaction, so each happens exactly once. A worker
signals "try again" by raising; only the consumer counts attempts.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from riskhub.config import PERIODS_PER_YEAR
from riskhub.contract import verify_hash
from riskhub.events import breach_event
from riskhub.model import NewOutboxEvent
from riskhub.risk import measures
from riskhub.risk.analytics import analyze
from riskhub.risk.limits import Breach, LimitBook, evaluate
from riskhub.risk.results import RISK_WORKER

LIVE = "live"
INLINE_ANALYSIS_IDS = 64


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """What the risk worker takes from the settings."""

    periods_per_year: int = PERIODS_PER_YEAR
    limits: LimitBook = field(default_factory=LimitBook)


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """What a worker sees: the stored snapshot (``stored``, the event's data), its parts resolved
    (``parts``), the correlation id of its event and the risk policy."""

    stored: Mapping[str, Any]
    parts: Mapping[str, Any]
    correlation_id: str | None = None
    policy: RiskPolicy = field(default_factory=RiskPolicy)

    @property
    def weights(self) -> Mapping[str, float]:
        """The snapshot's weights."""
        weights: Mapping[str, float] = self.stored["weights"]
        return weights

    @property
    def stage(self) -> str | None:
        """The snapshot's stage, if it has one."""
        provenance = self.stored.get("provenance")
        stage = provenance.get("stage") if isinstance(provenance, Mapping) else None
        return stage if isinstance(stage, str) else None


@dataclass(frozen=True, slots=True)
class WorkerOutput:
    """A worker's row and the events it announces (stored with the row, sent by the relay)."""

    result: dict[str, Any]
    events: tuple[NewOutboxEvent, ...] = ()


WorkerFn = Callable[[SnapshotView], Awaitable[dict[str, Any] | WorkerOutput]]


@dataclass(frozen=True, slots=True)
class Worker:
    """A named computation."""

    name: str
    run: WorkerFn


async def extended_validation(view: SnapshotView) -> dict[str, Any]:
    """Re-verify the hash against the resolved parts and summarise exposure."""
    resolved = {ref: view.parts[part] for part, ref in _refs(view.stored).items()}
    return {
        "hash_verified": verify_hash(view.stored, resolved.__getitem__),
        "exposure": measures.exposure(view.weights),
    }


async def risk(view: SnapshotView) -> WorkerOutput:
    """The snapshot's risk report (docs/runbook.md, "Reading the risk figures"), its limits' breaches, and one
    ``risk_limit_breached`` event per breached metric of a live snapshot."""
    analysis = partial(
        analyze,
        view.weights,
        covariance=view.parts.get("covariance"),
        realized_returns=view.parts.get("realized_returns"),
        stress=view.parts.get("stress"),
        periods_per_year=view.policy.periods_per_year,
    )
    # A large universe is milliseconds of numpy (which releases the GIL): off the event loop, so
    # the API sharing it stays responsive. A small one costs less than the hop to a thread.
    report = await asyncio.to_thread(analysis) if len(view.weights) > INLINE_ANALYSIS_IDS else analysis()
    limits = view.policy.limits.for_snapshot(str(view.stored.get("world_id", "")), view.stage or "")
    constraints = view.stored.get("constraints")
    own = constraints if isinstance(constraints, Mapping) else None
    breaches = evaluate(report.figures, limits, own, view.weights)
    announced = _announced(breaches) if view.stage == LIVE else []
    result = {
        **report.to_json(),
        "stage": view.stage,
        "breaches": [breach.to_json() for breach in breaches],
        "blocking": bool(announced),
    }
    events = tuple(breach_event(view.stored, breach.to_json(), view.correlation_id) for breach in announced)
    return WorkerOutput(result, events)


def _announced(breaches: Sequence[Breach]) -> list[Breach]:
    """Per metric, the largest ``breach``-severity excess (an event's key names the metric only;
    a value past float range, None, counts as the largest)."""
    worst: dict[str, Breach] = {}
    for breach in breaches:
        if breach.severity != "breach":
            continue
        held = worst.get(breach.metric)
        if held is None or _excess(breach) > _excess(held):
            worst[breach.metric] = breach
    return list(worst.values())


def _excess(breach: Breach) -> float:
    return float("inf") if breach.value is None else breach.value - breach.max


def _refs(stored: Mapping[str, Any]) -> dict[str, str]:
    offloaded = stored.get("hub_offloaded") or ()
    return {part: stored[f"{part}_ref"] for part in offloaded}


DEFAULT_WORKERS: tuple[Worker, ...] = (
    Worker("extended_validation", extended_validation),
    Worker(RISK_WORKER, risk),
)


def load_workers(paths: Iterable[str]) -> tuple[Worker, ...]:
    """Resolve ``module:attribute`` entries, each a ``Worker`` or a sequence of them."""
    loaded: list[Worker] = []
    for path in paths:
        module_name, _, attribute = path.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        items = [target] if isinstance(target, Worker) else list(target)
        if not all(isinstance(item, Worker) for item in items):
            raise ValueError(f"workers: {path!r} is not a Worker or a list of Workers")
        loaded.extend(items)
    names = [w.name for w in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"workers: duplicate worker names in {names}")
    return tuple(loaded)
