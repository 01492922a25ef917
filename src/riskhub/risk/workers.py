"""Risk workers run by the consumer on each new snapshot event.

A worker's only effect is the row it returns: the consumer stores it together with the processed
key in one transaction, so each effect happens exactly once. A worker signals "try again" by
raising; only the consumer counts attempts.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from riskhub.contract import verify_hash
from riskhub.risk import measures as risk

# The event data with every part resolved inline, plus the unresolved stored form.
WorkerFn = Callable[["SnapshotView"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """What a worker sees: the stored snapshot (``stored``) and its parts resolved (``parts``)."""

    stored: Mapping[str, Any]
    parts: Mapping[str, Any]

    @property
    def weights(self) -> Mapping[str, float]:
        """The snapshot's weights."""
        weights: Mapping[str, float] = self.stored["weights"]
        return weights


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
        "exposure": risk.exposure(view.weights),
    }


async def stress(view: SnapshotView) -> dict[str, Any]:
    """Realized volatility / drawdown of the weighted portfolio and the worst stress scenario."""
    result: dict[str, Any] = {}
    returns = view.parts.get("realized_returns")
    if returns is not None:
        series = _portfolio_series(view.weights, returns)
        if series is None:
            result["realized_volatility"] = result["realized_max_drawdown"] = None
        else:
            result["realized_volatility"] = risk.in_float_range(risk.realized_volatility, series)
            result["realized_max_drawdown"] = risk.in_float_range(risk.max_drawdown, series)
    covariance = view.parts.get("covariance")
    if covariance is not None:
        result["covariance_variance"] = risk.in_float_range(
            risk.covariance_variance, view.weights, covariance
        )
    if view.parts.get("stress"):
        result["worst_stress"] = risk.worst_stress(view.parts["stress"])
    return result


async def live_checks(view: SnapshotView) -> dict[str, Any]:
    """Limit breaches against the snapshot's own constraints (all stages; flagged for live)."""
    stage = view.stored.get("provenance", {}).get("stage")
    breaches = risk.limit_breaches(view.weights, view.stored.get("constraints") or {})
    return {"stage": stage, "breaches": breaches, "blocking": stage == "live" and bool(breaches)}


def _portfolio_series(weights: Mapping[str, float], returns: Any) -> list[float] | None:
    """The portfolio's returns, or None when they leave float range (no metric of them then)."""
    try:
        series = risk.portfolio_returns(weights, returns)
    except (OverflowError, ValueError):
        return None
    return series if all(map(math.isfinite, series)) else None


def _refs(stored: Mapping[str, Any]) -> dict[str, str]:
    offloaded = stored.get("hub_offloaded") or ()
    return {part: stored[f"{part}_ref"] for part in offloaded}


DEFAULT_WORKERS: tuple[Worker, ...] = (
    Worker("extended_validation", extended_validation),
    Worker("stress", stress),
    Worker("live_checks", live_checks),
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
