"""`make soak`, one minute of it: the production topology on loopback (PostgreSQL, Redis, moto S3,
Tansu, two `riskhub serve` and two `riskhub worker` processes) under the mixed load, with the broker
frozen, Redis restarted, a worker and a serve killed with SIGKILL. The same entry point as
`make soak`; its ledger must show nothing lost, nothing doubled and no orphan blob."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak import SoakOptions, run_soak


@pytest.mark.slow
async def test_a_minute_of_soak_under_faults_loses_nothing_doubles_nothing_orphans_nothing(
    tmp_path: Path,
) -> None:
    result = await run_soak(SoakOptions(duration_s=60, drain_timeout_s=30, workdir=tmp_path / "soak"))
    report = result.report()
    print("\n" + report)
    assert sum(result.ledger.lost.values()) == 0, report
    assert sum(result.ledger.double.values()) == 0, report
    assert result.ledger.orphans == 0, report
    assert [f.kind for f in result.faults] == [
        "broker paused",
        "redis restarted",
        "worker kill -9",
        "serve kill -9",
    ]
    assert result.ok, report  # and drained, every answer as expected, every process up at the end
