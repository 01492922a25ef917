"""Risk limits: the hub's own (a TOML file) and a snapshot's ``constraints``, checked against a report.

The hub's file (setting ``limits_file``, env ``RISKHUB_LIMITS_FILE``) holds ``[[limit]]`` rows::

    [[limit]]
    world = "*"          # "*" or a world id
    stage = "live"       # "*" or a stage
    metric = "var_99"    # a figure name of RiskReport.figures
    max = 0.05
    severity = "breach"  # "warn" | "breach"

Per metric the most specific row wins: world and stage, then world, then stage, then ``*``/``*``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from riskhub.risk.analytics import FIGURE_NAMES

ANY = "*"
SEVERITIES = ("warn", "breach")
_FIELDS = frozenset({"world", "stage", "metric", "max", "severity"})
_METRICS = frozenset(FIGURE_NAMES)

LimitSeverity = Literal["warn", "breach"]


@dataclass(frozen=True, slots=True)
class Limit:
    """A bound on one figure, for a world (or ``*``) and a stage (or ``*``)."""

    metric: str
    max: float
    severity: LimitSeverity
    world: str = ANY
    stage: str = ANY

    @property
    def specificity(self) -> int:
        """3 for world and stage, 2 for world only, 1 for stage only, 0 for ``*``/``*``."""
        return 2 * (self.world != ANY) + (self.stage != ANY)

    def applies_to(self, world_id: str, stage: str) -> bool:
        """Whether this row covers a snapshot of ``world_id`` at ``stage``."""
        return self.world in (ANY, world_id) and self.stage in (ANY, stage)


@dataclass(frozen=True, slots=True)
class Breach:
    """A figure over its bound. ``value`` None: past float range, so over any bound."""

    metric: str
    value: float | None
    max: float
    severity: LimitSeverity
    source: Literal["limits", "constraints"]
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict of the breach."""
        return {
            "metric": self.metric,
            "value": self.value,
            "max": self.max,
            "severity": self.severity,
            "source": self.source,
            "id": self.id,
        }


@dataclass(frozen=True, slots=True)
class LimitBook:
    """The hub's limits as loaded, in file order."""

    limits: tuple[Limit, ...] = ()

    def for_snapshot(self, world_id: str, stage: str) -> dict[str, Limit]:
        """Per metric, the most specific limit covering ``world_id`` at ``stage``."""
        chosen: dict[str, Limit] = {}
        for limit in self.limits:
            if not limit.applies_to(world_id, stage):
                continue
            held = chosen.get(limit.metric)
            if held is None or limit.specificity > held.specificity:
                chosen[limit.metric] = limit
        return chosen


def load_limits(path: str | os.PathLike[str]) -> LimitBook:
    """The limit book of a TOML file; ValueError naming the row and field of anything wrong."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    return parse_limits(document, source=str(path))


def parse_limits(document: Mapping[str, Any], source: str = "limits") -> LimitBook:
    """The limit book of a parsed TOML document (``[[limit]]`` rows)."""
    unknown = sorted(set(document) - {"limit"})
    if unknown:
        raise ValueError(f"{source}: unknown top-level key {unknown[0]!r} (expected [[limit]] rows)")
    rows = document.get("limit", [])
    if not isinstance(rows, list):
        raise ValueError(f"{source}: 'limit' must be an array of tables ([[limit]])")
    limits = tuple(_parse_row(row, f"{source}: limit[{index}]") for index, row in enumerate(rows))
    _reject_duplicates(limits, source)
    return LimitBook(limits)


def _parse_row(row: Any, where: str) -> Limit:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: must be a table")
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (expected {', '.join(sorted(_FIELDS))})")
    metric = _text(row, "metric", where, default=None)
    if metric not in _METRICS:
        raise ValueError(f"{where}.metric: unknown metric {metric!r} (expected a figure name)")
    return Limit(
        metric=metric,
        max=_bound(row, where),
        severity=_severity(row, where),
        world=_text(row, "world", where, default=ANY),
        stage=_text(row, "stage", where, default=ANY),
    )


def _text(row: Mapping[str, Any], field: str, where: str, default: str | None) -> str:
    value = row.get(field, default)
    if value is None:
        raise ValueError(f"{where}.{field}: missing")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{field}: must be a non-empty string, got {value!r}")
    return value


def _bound(row: Mapping[str, Any], where: str) -> float:
    if "max" not in row:
        raise ValueError(f"{where}.max: missing")
    value = row["max"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}.max: must be a finite number, got {value!r}")
    return float(value)


def _severity(row: Mapping[str, Any], where: str) -> LimitSeverity:
    value = row.get("severity")
    if value is None:
        raise ValueError(f"{where}.severity: missing (expected one of {', '.join(SEVERITIES)})")
    if value == "warn":
        return "warn"
    if value == "breach":
        return "breach"
    raise ValueError(
        f"{where}.severity: unknown severity {value!r} (expected one of {', '.join(SEVERITIES)})"
    )


def _reject_duplicates(limits: tuple[Limit, ...], source: str) -> None:
    # Two rows for one metric at one (world, stage) would leave the winner to file order.
    seen: dict[tuple[str, str, str], int] = {}
    for index, limit in enumerate(limits):
        key = (limit.metric, limit.world, limit.stage)
        if key in seen:
            raise ValueError(
                f"{source}: limit[{index}]: duplicates limit[{seen[key]}] "
                f"(metric {limit.metric!r}, world {limit.world!r}, stage {limit.stage!r})"
            )
        seen[key] = index


def evaluate(
    figures: Mapping[str, float | None],
    limits: Mapping[str, Limit],
    constraints: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[Breach]:
    """Breaches of the hub's ``limits`` (figure > max), then of the snapshot's own ``constraints``."""
    breaches = [
        Breach(metric, value, limit.max, limit.severity, "limits")
        for metric, limit in limits.items()
        if (value := figures.get(metric)) is not None and value > limit.max
    ]
    return breaches + constraint_breaches(figures, constraints or {}, weights)


def constraint_breaches(
    figures: Mapping[str, float | None], constraints: Mapping[str, Any], weights: Mapping[str, float] | None
) -> list[Breach]:
    """``max_weight`` (per id |w| > bound; the largest |w| without weights) and ``max_gross``."""
    breaches: list[Breach] = []
    max_weight = _number(constraints.get("max_weight"))
    if max_weight is not None:
        if weights is not None:
            over = [(key, abs(float(w))) for key, w in weights.items() if abs(float(w)) > max_weight]
            breaches += [Breach("max_weight", v, max_weight, "breach", "constraints", key) for key, v in over]
        elif (largest := figures.get("max_weight")) is not None and largest > max_weight:
            breaches.append(Breach("max_weight", largest, max_weight, "breach", "constraints"))
    max_gross = _number(constraints.get("max_gross"))
    if max_gross is not None:
        gross = figures.get("gross")
        # None from analyze(): gross past float range, over any bound. Without the figure, no claim.
        if ("gross" in figures and gross is None) or (gross is not None and gross > max_gross):
            breaches.append(Breach("gross", gross, max_gross, "breach", "constraints"))
    return breaches


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
