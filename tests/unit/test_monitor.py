"""Freshness judgement and its Nagios rendering (pure: no hub)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from riskhub.ops.monitor import Freshness, FreshnessReport, Status, Thresholds, format_lag, judge_latest

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("lag_s", "status"),
    [(0, Status.OK), (600, Status.OK), (601, Status.WARN), (1800, Status.WARN), (1801, Status.CRIT)],
)
def test_lag_is_ok_up_to_warn_then_warn_then_crit(lag_s: float, status: Status) -> None:
    assert Thresholds(warn_s=600, crit_s=1800).status_of(lag_s) is status


def test_lag_is_measured_from_as_of_in_utc_whatever_the_offset() -> None:
    latest = {"as_of": "2026-01-01T20:40:00+09:00", "version": "v7", "created_at": at(5)}
    result = judge_latest(latest, "w1", None, Thresholds(), NOW)
    assert (result.status, result.lag_s, result.received_age_s) == (Status.WARN, 1200, 5)


def report(*statuses: Status) -> FreshnessReport:
    results = [Freshness(f"w{i}", None, s) for i, s in enumerate(statuses)]
    return FreshnessReport(results, Thresholds(), NOW)


@pytest.mark.parametrize(
    ("statuses", "exit_code"),
    [
        ((), 0),
        ((Status.OK, Status.OK), 0),
        ((Status.OK, Status.WARN), 1),
        ((Status.WARN, Status.UNKNOWN), 3),
        ((Status.UNKNOWN, Status.MISSING), 2),
        ((Status.CRIT, Status.UNKNOWN, Status.WARN), 2),
    ],
)
def test_the_run_exits_with_the_most_serious_status(statuses: tuple[Status, ...], exit_code: int) -> None:
    assert report(*statuses).exit_code == exit_code


def test_the_status_line_has_details_and_perfdata() -> None:
    results = [
        Freshness("w1", "paper", Status.OK, lag_s=42.4),
        Freshness("w2", None, Status.MISSING, detail="no snapshot for world 'w2'"),
    ]
    line = FreshnessReport(results, Thresholds(600, 1800), NOW).summary()
    assert line == (
        "RISKHUB FRESHNESS MISSING - w1/paper OK 42s; w2 MISSING (no snapshot for world 'w2')"
        " | 'w1/paper'=42s;600;1800"
    )


def test_json_report_is_machine_readable() -> None:
    document = json.loads(report(Status.OK, Status.WARN).to_json())
    assert (document["status"], document["exit_code"], len(document["results"])) == ("WARN", 1, 2)
    assert document["checked_at"] == "2026-01-01T12:00:00Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (700, "11m40s"),
        (7500, "2h05m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (-5, "-5s"),
    ],
)
def test_lags_read_like_durations(seconds: float, text: str) -> None:
    assert format_lag(seconds) == text


def test_the_table_prints_ids_and_messages_as_they_are() -> None:
    """rich reads "[...]" as markup and ":name:" as an emoji in plain strings: a world
    "w:boom:" or a version "v[red]" printed as something else."""
    results = [Freshness("w:boom:", None, Status.CRIT, version="v[red]1", detail="[b]x[/b] :smile:")]
    console = Console(record=True, width=200)
    console.print(FreshnessReport(results, Thresholds(), NOW).table())
    text = console.export_text()
    assert "w:boom:" in text and "v[red]1" in text and "[b]x[/b] :smile:" in text
