"""The status page's pure pieces: the last hour's counts, freshness states, sparklines."""

from __future__ import annotations

from riskhub.api.status import _sparkline, _state
from riskhub.metrics import RecentIncrease

KEY = ("dedupe", "w1", "paper")


def test_counts_are_the_increase_over_the_last_hour_from_minute_samples() -> None:
    recent = RecentIncrease()
    recent.samples.append((0.0, {}))  # the process starts with every counter at 0
    assert recent.increase({KEY: 5}, now=30.0) == {KEY: 5}  # within the first hour: since start
    assert recent.increase({KEY: 7}, now=61.0) == {KEY: 7}  # a new sample is taken (a minute passed)
    assert recent.increase({KEY: 9}, now=3661.0) == {KEY: 2}  # the start fell out; base = 7 at 61 s
    assert len(recent.samples) == 2


def test_freshness_follows_the_runbook_thresholds() -> None:
    assert [_state(age, False, 600, 1800) for age in (0, 600, 601, 1800, 1801)] == [
        "OK",
        "OK",
        "WARN",
        "WARN",
        "CRIT",
    ]
    assert _state(5, True, 600, 1800) == "EXPIRED"  # an expired latest is never OK


def test_a_sparkline_spans_the_box_and_skips_unknown_points() -> None:
    assert _sparkline([1.0, None, 3.0]) == "0.0,20.0 100.0,0.0"
    assert _sparkline([2.0]) == "" and _sparkline([None, None]) == ""
