"""Figures from realized returns: historical VaR/ES, drawdown, sample sigma, Ledoit-Wolf (pure numpy).

Series arrive per period; losses are positive fractions of portfolio value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

CONFIDENCE_LEVELS = (0.95, 0.975, 0.99)
SUFFIX = {0.95: "95", 0.975: "975", 0.99: "99"}
# round(): 1 / (1 - 0.99) is 99.99999999999991 in floats; the rule means 100.
MIN_POINTS = {a: math.ceil(round(1.0 / (1.0 - a), 9)) for a in CONFIDENCE_LEVELS}


def ledoit_wolf(x: Array) -> Array:
    """Ledoit-Wolf shrunk covariance of T x n observations, as sklearn's LedoitWolf().fit(x)."""
    t, n = x.shape
    centered = x - x.mean(axis=0)
    empirical: Array = (centered.T @ centered) / t
    variances = np.diagonal(empirical)
    if n == 1:
        return empirical
    mu = float(variances.sum()) / n
    squares = centered**2
    row_sums = squares.sum(axis=1)
    # sum over i, j of (X2' X2)_ij is the sum over t of (sum_i x_ti^2)^2: O(Tn), not O(Tn^2).
    beta_sum = float(row_sums @ row_sums)
    delta_sum = float(np.sum(empirical**2))
    beta = (beta_sum / t - delta_sum) / (n * t)
    delta = (delta_sum - 2.0 * mu * float(variances.sum()) + n * mu**2) / n
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 or delta == 0 else beta / delta
    shrunk: Array = (1.0 - shrinkage) * empirical
    shrunk.flat[:: n + 1] += shrinkage * mu
    return shrunk


def sample_std(x: Array) -> Any:
    """Sample standard deviation (ddof 1) along the last axis."""
    count = x.shape[-1]
    deviations = x - x.sum(axis=-1, keepdims=True) / count  # sum / n: x.mean() costs more at this size
    return np.sqrt((deviations * deviations).sum(axis=-1) / (count - 1))


def historical_var_es(series: Array) -> dict[str, float | None]:
    """VaR_a = -quantile(r, 1 - a) (linear) and ES_a = -mean(r <= -VaR_a); None below ceil(1/(1-a)) points."""
    ordered = np.sort(series)
    figures: dict[str, float | None] = {}
    for a in CONFIDENCE_LEVELS:
        var = es = None
        if ordered.size >= MIN_POINTS[a]:
            quantile = sorted_quantile(ordered, 1.0 - a)
            count = int(np.searchsorted(ordered, quantile, side="right"))
            var, es = -quantile, -float(ordered[:count].sum()) / count if count else math.nan
        figures[f"hist_var_{SUFFIX[a]}"], figures[f"hist_es_{SUFFIX[a]}"] = var, es
    return figures


def sorted_quantile(ordered: Array, q: float) -> float:
    """numpy's default (linear) quantile of sorted data, with its own interpolation, so equal to it."""
    virtual = (ordered.size - 1) * q
    below = math.floor(virtual)
    gamma = virtual - below
    a, b = float(ordered[below]), float(ordered[min(below + 1, ordered.size - 1)])
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


def max_drawdown(series: Array) -> float | None:
    """Largest 1 - level/peak of the compounded series, the start (level 1) being the first peak."""
    if series.size == 0:
        return None
    level = np.cumprod(1.0 + series)
    peak = np.maximum(np.maximum.accumulate(level), 1.0)
    return float(np.max(1.0 - level / peak))
