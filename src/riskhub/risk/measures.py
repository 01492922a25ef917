"""Exposure of a snapshot's weights, exact (``fsum``) and never an error (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


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
