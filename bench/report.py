"""The final table: one line per measurement with its value, goal and verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NO_GOAL = "-"


@dataclass(frozen=True)
class Line:
    """One measurement of the summary table."""

    config: str
    name: str
    value: str
    goal: str
    met: bool | None  # None: not measured (skipped)
    details: str = ""

    @property
    def verdict(self) -> str:
        """``ok``, ``MISSED`` or ``skipped``."""
        if self.goal == NO_GOAL:
            return "info"
        if self.met is None:
            return "skipped"
        return "ok" if self.met else "MISSED"


def at_least(config: str, name: str, value: float, goal: float, details: str) -> Line:
    """A line whose value must reach ``goal`` (ratios, throughput)."""
    met = not math.isnan(value) and value >= goal
    return Line(config, name, f"{value:.2f}", f">= {goal:g}", met, details)


def at_most(config: str, name: str, value: float, goal: float, unit: str, details: str) -> Line:
    """A line whose value must stay under ``goal`` (latency, memory)."""
    met = not math.isnan(value) and value < goal
    return Line(config, name, f"{value:.1f} {unit}", f"< {goal:g} {unit}", met, details)


def info(config: str, name: str, value: str, details: str = "") -> Line:
    """A line that shows a measurement without a goal (how a cost grows)."""
    return Line(config, name, value, NO_GOAL, True, details)


def latency_pair(
    config: str, name: str, values_ms: tuple[float, float], goals_ms: tuple[float, float], details: str
) -> list[Line]:
    """``<name> p50`` and ``<name> p99`` lines, each under its goal."""
    return [
        at_most(config, f"{name} {label}", value, goal, "ms", details)
        for label, value, goal in zip(("p50", "p99"), values_ms, goals_ms, strict=True)
    ]


def table(lines: Sequence[Line]) -> str:
    """The aligned summary table."""
    header = Line("config", "measurement", "value", "goal", True, "details")
    rows = [header, *lines]
    widths = [
        max(len(getattr(row, column)) for row in rows) for column in ("config", "name", "value", "goal")
    ]
    out = []
    for row in rows:
        verdict = "verdict" if row is header else row.verdict
        cells = (row.config, row.name, row.value, row.goal)
        text = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        out.append(f"{text}  {verdict:<7}  {row.details}".rstrip())
    return "\n".join(out)
