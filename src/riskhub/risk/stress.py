"""Stress scenarios of one snapshot: each scenario's loss and the worst one (pure, no I/O).

A scenario's metrics are numbers as the producer sent them, plus optional ``shocks`` (id ->
return) that the hub turns into a pnl itself. Losses are positive fractions of portfolio value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHOCKS = "shocks"


@dataclass(frozen=True, slots=True)
class StressTable:
    """Per-scenario rows, the worst ranked scenario, and the scenarios that could not be ranked."""

    rows: list[dict[str, Any]]
    worst: str | None
    worst_loss: float | None
    unranked: list[str]  # no metric of known meaning
    out_of_range: list[str]  # a pnl or loss past float range


def shocks_pnl(weights: Mapping[str, float], shocks: Mapping[str, float]) -> float:
    """Portfolio pnl of per-id return shocks: sum of weight x shock (unshocked ids move 0)."""
    # float() first: an int weight times an int shock could be an int past float range.
    return sum(float(weights[k]) * float(v) for k, v in shocks.items() if k in weights)


def scenario_loss(
    weights: Mapping[str, float], metrics: Mapping[str, Any]
) -> tuple[float | None, float | None]:
    """(loss, pnl) of one scenario: the first of -pnl, -return, max_drawdown, loss that it has."""
    shocks = metrics.get(SHOCKS)
    pnl = shocks_pnl(weights, shocks) if isinstance(shocks, Mapping) else _number(metrics.get("pnl"))
    if pnl is not None:
        return 0.0 - pnl, pnl  # 0.0 - x: no "-0.0" for a flat scenario
    given_return = _number(metrics.get("return"))
    if given_return is not None:
        return 0.0 - given_return, None
    drawdown = _number(metrics.get("max_drawdown"))
    if drawdown is not None:
        return drawdown, None
    return _number(metrics.get("loss")), None


def stress_table(weights: Mapping[str, float], stress: Mapping[str, Mapping[str, Any]] | None) -> StressTable:
    """Every scenario with its loss and pnl; the worst is the largest loss (first one on a tie)."""
    rows: list[dict[str, Any]] = []
    unranked: list[str] = []
    out_of_range: list[str] = []
    worst: str | None = None
    worst_loss = -math.inf
    for scenario, metrics in (stress or {}).items():
        loss, pnl = scenario_loss(weights, metrics)
        if not _finite(loss) or not _finite(pnl):
            out_of_range.append(scenario)
            loss, pnl = _finite_or_none(loss), _finite_or_none(pnl)
        elif loss is None:
            unranked.append(scenario)
        if loss is not None and loss > worst_loss:
            worst, worst_loss = scenario, loss
        reported = {name: value for name, value in metrics.items() if name != SHOCKS}
        rows.append({"scenario": scenario, "loss": loss, "pnl": pnl, "metrics": reported})
    return StressTable(rows, worst, None if worst is None else worst_loss, unranked, out_of_range)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int past float range
        return math.inf if value > 0 else -math.inf


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
