"""Freshness monitor: the lag of each world's latest ``as_of``, judged the Nagios way.

Per world (and stage, when asked) one check against ``GET .../snapshots/latest``:

    OK       lag <= warn_s                       exit 0
    WARN     warn_s < lag <= crit_s              exit 1
    CRIT     lag > crit_s                        exit 2
    MISSING  no snapshot, or the newest expired  exit 2
    UNKNOWN  hub unreachable, token refused, any other error   exit 3

The run exits with the most serious status: CRIT/MISSING, then UNKNOWN, then WARN, then OK. A
confirmed outage pages as critical even when another check could not be made; not knowing
outranks a warning.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rich.table import Table
from rich.text import Text

from riskhub.client import AsyncRiskHubClient
from riskhub.contract import parse_timestamp
from riskhub.errors import RiskHubError, SnapshotNotFound

DEFAULT_WARN_S = 600.0
DEFAULT_CRIT_S = 1800.0


class Status(StrEnum):
    """The outcome of one freshness check."""

    OK = "OK"
    WARN = "WARN"
    CRIT = "CRIT"
    MISSING = "MISSING"
    UNKNOWN = "UNKNOWN"


EXIT_CODES = {Status.OK: 0, Status.WARN: 1, Status.CRIT: 2, Status.MISSING: 2, Status.UNKNOWN: 3}
_SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.UNKNOWN: 2, Status.MISSING: 3, Status.CRIT: 3}
_STYLES = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.CRIT: "bold red",
    Status.MISSING: "bold red",
    Status.UNKNOWN: "magenta",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Lag limits in seconds (runbook: warn ~10 min, crit ~30 min)."""

    warn_s: float = DEFAULT_WARN_S
    crit_s: float = DEFAULT_CRIT_S

    def status_of(self, lag_s: float) -> Status:
        """OK, WARN or CRIT for a lag."""
        if lag_s > self.crit_s:
            return Status.CRIT
        if lag_s > self.warn_s:
            return Status.WARN
        return Status.OK


@dataclass(frozen=True, slots=True)
class Freshness:
    """One world/stage check."""

    world_id: str
    stage: str | None
    status: Status
    lag_s: float | None = None  # now - as_of of the latest snapshot
    received_age_s: float | None = None  # now - when the hub stored it
    as_of: str | None = None
    version: str | None = None
    detail: str = ""

    @property
    def scope(self) -> str:
        """``world`` or ``world/stage``."""
        return self.world_id if self.stage is None else f"{self.world_id}/{self.stage}"

    def short_text(self) -> str:
        """``w1 OK 42s`` or ``w2 MISSING (no snapshot for world 'w2')``."""
        text = f"{self.scope} {self.status.value}"
        if self.lag_s is not None:
            text += f" {format_lag(self.lag_s)}"
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "world_id": self.world_id,
            "stage": self.stage,
            "status": self.status.value,
            "lag_seconds": _rounded(self.lag_s),
            "received_age_seconds": _rounded(self.received_age_s),
            "as_of": self.as_of,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class FreshnessReport:
    """Every check of one run."""

    results: list[Freshness]
    thresholds: Thresholds
    checked_at: datetime

    @property
    def status(self) -> Status:
        """The most serious status (OK for an empty run)."""
        return max((r.status for r in self.results), key=_SEVERITY.__getitem__, default=Status.OK)

    @property
    def exit_code(self) -> int:
        """Nagios exit code: 0 OK, 1 WARN, 2 CRIT or missing, 3 unknown."""
        return EXIT_CODES[self.status]

    def summary(self) -> str:
        """Nagios status line: text, then per-scope lag as performance data."""
        parts = [r.short_text() for r in self.results]
        perfdata = [
            f"'{r.scope}'={int(r.lag_s)}s;{self.thresholds.warn_s:.0f};{self.thresholds.crit_s:.0f}"
            for r in self.results
            if r.lag_s is not None
        ]
        line = f"RISKHUB FRESHNESS {self.status.value} - {'; '.join(parts) or 'no worlds checked'}"
        return f"{line} | {' '.join(perfdata)}" if perfdata else line

    def to_json(self) -> str:
        """Machine-readable report."""
        return json.dumps(
            {
                "status": self.status.value,
                "exit_code": self.exit_code,
                "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
                "warn_seconds": self.thresholds.warn_s,
                "crit_seconds": self.thresholds.crit_s,
                "results": [r.as_dict() for r in self.results],
            },
            indent=2,
        )

    def table(self) -> Table:
        """A readable table, one row per check."""
        title = f"risk hub freshness (warn > {format_lag(self.thresholds.warn_s)}, crit > "
        table = Table(title=title + f"{format_lag(self.thresholds.crit_s)})")
        for column in ("world", "stage", "status", "lag", "as_of", "version", "detail"):
            table.add_column(column, overflow="fold")
        for r in self.results:
            lag = "-" if r.lag_s is None else format_lag(r.lag_s)
            table.add_row(  # data as Text: rich would read "[x]" as markup and ":boom:" as an emoji
                Text(r.world_id),
                Text(r.stage or "any"),
                Text(r.status.value, style=_STYLES[r.status]),
                lag,
                Text(r.as_of or "-"),
                Text(r.version or "-"),
                Text(r.detail),
            )
        return table


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


async def check_freshness(
    client: AsyncRiskHubClient,
    worlds: Iterable[str],
    stages: Iterable[str] = (),
    thresholds: Thresholds = Thresholds(),
    clock: Callable[[], datetime] = utc_now,
) -> FreshnessReport:
    """Check every world (for each stage, or across stages when none is given) concurrently."""
    stage_list: list[str | None] = [*stages] or [None]
    scopes = [(world, stage) for world in worlds for stage in stage_list]
    results = await asyncio.gather(
        *(check_one(client, world, stage, thresholds, clock) for world, stage in scopes)
    )
    return FreshnessReport(list(results), thresholds, clock())


async def check_one(
    client: AsyncRiskHubClient,
    world_id: str,
    stage: str | None,
    thresholds: Thresholds,
    clock: Callable[[], datetime] = utc_now,
) -> Freshness:
    """One world/stage: MISSING on 404, UNKNOWN on any other failure, else judged by lag."""
    try:
        latest = await client.latest(world_id, stage=stage)
        return judge_latest(latest, world_id, stage, thresholds, clock())
    except SnapshotNotFound as exc:  # none at all, or the newest has expired (named in the message)
        return Freshness(world_id, stage, Status.MISSING, detail=exc.message)
    except RiskHubError as exc:
        return Freshness(world_id, stage, Status.UNKNOWN, detail=exc.message)


def judge_latest(
    latest: Mapping[str, Any], world_id: str, stage: str | None, thresholds: Thresholds, now: datetime
) -> Freshness:
    """Freshness of a served ``latest`` snapshot (``ContractError`` if its ``as_of`` is unreadable)."""
    as_of = latest.get("as_of")
    lag_s = (now - parse_timestamp(str(as_of), "as_of")).total_seconds()
    created_at = latest.get("created_at")
    received_age_s = (
        (now - parse_timestamp(created_at, "created_at")).total_seconds()
        if isinstance(created_at, str)
        else None
    )
    return Freshness(
        world_id,
        stage,
        thresholds.status_of(lag_s),
        lag_s=lag_s,
        received_age_s=received_age_s,
        as_of=str(as_of),
        version=str(latest.get("version")),
    )


def format_lag(seconds: float) -> str:
    """``42s``, ``11m40s``, ``2h05m``, ``3d04h`` (negative: ``as_of`` is in the future)."""
    sign, whole = ("-" if seconds < 0 else ""), int(abs(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{sign}{days}d{hours:02d}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
