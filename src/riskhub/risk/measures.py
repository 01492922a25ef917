"""Risk computations the workers run on a snapshot (pure functions, no I/O).

They run on every snapshot event, so the hot ones avoid per-element generators: a generator
step costs more than the arithmetic it feeds (measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from operator import mul
from typing import Any

# A keyed-covariance plan: the distinct ids, then one (i, j, coefficient) per key, in key order.
_KeyedPlan = tuple[tuple[str, ...], tuple[tuple[int, int, float], ...]]


def in_float_range(metric: Callable[..., float | None], *args: Any) -> float | None:
    """``metric(*args)``, or None where it leaves float range. Every number of a valid snapshot is
    finite, but sums and products of absurd ones (weights of 1e308) need not be: ``fsum`` raises
    then, and plain arithmetic gives inf or nan. A metric is never an error on valid input."""
    try:
        value = metric(*args)
    except (OverflowError, ValueError):  # fsum: past float range, or inf - inf
        return None
    return value if value is None or math.isfinite(value) else None


def gross_exposure(weights: Mapping[str, float]) -> float | None:
    """Sum of absolute weights (None beyond float range)."""
    return in_float_range(math.fsum, map(abs, weights.values()))


def exposure(weights: Mapping[str, float]) -> dict[str, float | None]:
    """Gross and net exposure, largest absolute weight, number of positions."""
    values = list(weights.values())
    return {
        "gross": gross_exposure(weights),
        "net": in_float_range(math.fsum, values),
        "max_abs_weight": max(map(abs, values), default=0.0),
        "positions": float(len(values)),
    }


def portfolio_returns(
    weights: Mapping[str, float], returns: Mapping[str, Sequence[float]] | Sequence[float]
) -> list[float]:
    """Weighted portfolio return per period (a single series is the portfolio's own).

    Series whose id is not in ``weights`` are ignored; the others are cut to the shortest."""
    if not isinstance(returns, Mapping):
        return list(returns)
    ids = [k for k in returns if k in weights]
    position_weights = [weights[k] for k in ids]
    # zip(*series) yields one tuple per period and stops at the shortest series.
    periods = zip(*(returns[k] for k in ids), strict=False)
    return [math.fsum(map(mul, position_weights, period)) for period in periods]


def realized_volatility(series: Sequence[float]) -> float | None:
    """Sample standard deviation of a return series (None below two points)."""
    n = len(series)
    if n < 2:
        return None
    mean = math.fsum(series) / n
    deviations = [x - mean for x in series]
    return math.sqrt(math.fsum(map(mul, deviations, deviations)) / (n - 1))


def max_drawdown(series: Sequence[float]) -> float:
    """Largest peak-to-trough loss of the compounded series, as a positive fraction."""
    level, peak, worst = 1.0, 1.0, 0.0
    for r in series:
        level *= 1.0 + r
        if level > peak:
            peak = level  # a new peak is no drawdown
        elif 1.0 - level / peak > worst:
            worst = 1.0 - level / peak
    return worst


def covariance_variance(weights: Mapping[str, float], covariance: Mapping[str, Any]) -> float:
    """Portfolio variance w' S w from the keyed or dense covariance form. In the keyed form a pair
    given one way only stands for both (a,b) and (b,a). Ids missing from ``weights`` count as 0."""
    if "ids" in covariance and "matrix" in covariance:
        return _dense_variance(weights, covariance["ids"], covariance["matrix"])
    return _keyed_variance(weights, covariance)


def _keyed_variance(weights: Mapping[str, float], covariance: Mapping[str, float]) -> float:
    ids, entries = _keyed_plan(tuple(covariance))
    w = [weights.get(a, 0.0) for a in ids]
    terms = zip(entries, covariance.values(), strict=True)
    return math.fsum([w[i] * w[j] * coefficient * v for (i, j, coefficient), v in terms])


def _dense_variance(
    weights: Mapping[str, float], ids: Sequence[str], matrix: Sequence[Sequence[float]]
) -> float:
    w = [weights.get(a, 0.0) for a in ids]
    return math.fsum(
        [wi * wj * v for wi, row in zip(w, matrix, strict=True) for wj, v in zip(w, row, strict=True)]
    )


# Producers send the same covariance keys snapshot after snapshot, so splitting and pairing the
# keys is done once per key set. A plan holds one entry per key: keep few (a big universe is big).
@lru_cache(maxsize=16)
def _keyed_plan(keys: tuple[str, ...]) -> _KeyedPlan:
    """Index the ids of ``keys`` ("a,b"); weight a pair given one way only twice."""
    given = set(keys)
    index: dict[str, int] = {}
    entries = []
    for key in keys:
        a, b = key.split(",")
        coefficient = 1.0 if a == b or f"{b},{a}" in given else 2.0
        entries.append((index.setdefault(a, len(index)), index.setdefault(b, len(index)), coefficient))
    return tuple(index), tuple(entries)


def worst_stress(stress: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The scenario with the largest ``max_drawdown`` (or largest metric) and its value."""
    worst_name, worst_value = None, -math.inf
    for scenario, metrics in stress.items():
        value = metrics.get("max_drawdown", max(metrics.values(), default=-math.inf))
        if value > worst_value:
            worst_name, worst_value = scenario, value
    return {"scenario": worst_name, "value": None if worst_name is None else worst_value}


def limit_breaches(weights: Mapping[str, float], constraints: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Weights over ``constraints.max_weight`` and gross over ``constraints.max_gross``."""
    breaches: list[dict[str, Any]] = []
    max_weight = constraints.get("max_weight")
    if isinstance(max_weight, int | float):
        breaches += [
            {"limit": "max_weight", "id": k, "value": w, "bound": max_weight}
            for k, w in weights.items()
            if abs(w) > max_weight
        ]
    max_gross = constraints.get("max_gross")
    if isinstance(max_gross, int | float):
        gross = gross_exposure(weights)  # None: beyond float range, so over any bound
        if gross is None or gross > max_gross:
            breaches.append({"limit": "max_gross", "value": gross, "bound": max_gross})
    return breaches
