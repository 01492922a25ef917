"""Risk computations the workers run on a snapshot (pure functions, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def exposure(weights: Mapping[str, float]) -> dict[str, float]:
    """Gross and net exposure, largest absolute weight, number of positions."""
    values = list(weights.values())
    return {
        "gross": math.fsum(abs(w) for w in values),
        "net": math.fsum(values),
        "max_abs_weight": max((abs(w) for w in values), default=0.0),
        "positions": float(len(values)),
    }


def portfolio_returns(
    weights: Mapping[str, float], returns: Mapping[str, Sequence[float]] | Sequence[float]
) -> list[float]:
    """Weighted portfolio return per period (a single series is the portfolio's own)."""
    if not isinstance(returns, Mapping):
        return list(returns)
    series = {k: v for k, v in returns.items() if k in weights}
    if not series:
        return []
    length = min(len(v) for v in series.values())
    return [math.fsum(weights[k] * v[i] for k, v in series.items()) for i in range(length)]


def realized_volatility(series: Sequence[float]) -> float | None:
    """Sample standard deviation of a return series (None below two points)."""
    if len(series) < 2:
        return None
    mean = math.fsum(series) / len(series)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in series) / (len(series) - 1))


def max_drawdown(series: Sequence[float]) -> float:
    """Largest peak-to-trough loss of the compounded series, as a positive fraction."""
    level, peak, worst = 1.0, 1.0, 0.0
    for r in series:
        level *= 1.0 + r
        peak = max(peak, level)
        worst = max(worst, 1.0 - level / peak)
    return worst


def covariance_variance(weights: Mapping[str, float], covariance: Mapping[str, Any]) -> float:
    """Portfolio variance w' S w from the keyed or dense covariance form. In the keyed form a pair
    given one way only stands for both (a,b) and (b,a)."""
    if "ids" in covariance and "matrix" in covariance:
        w = [weights.get(a, 0.0) for a in covariance["ids"]]
        return math.fsum(
            w[i] * w[j] * v for i, row in enumerate(covariance["matrix"]) for j, v in enumerate(row)
        )
    total = 0.0
    for key, value in covariance.items():
        a, b = key.split(",")
        if a == b:
            total += weights.get(a, 0.0) ** 2 * value
        elif f"{b},{a}" in covariance:
            total += weights.get(a, 0.0) * weights.get(b, 0.0) * value
        else:
            total += 2.0 * weights.get(a, 0.0) * weights.get(b, 0.0) * value
    return total


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
    gross = exposure(weights)["gross"]
    if isinstance(max_gross, int | float) and gross > max_gross:
        breaches.append({"limit": "max_gross", "value": gross, "bound": max_gross})
    return breaches
