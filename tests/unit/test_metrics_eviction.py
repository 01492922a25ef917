"""Idle worlds leave the process's memory and the scrape; an active one keeps its series."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest

from riskhub import metrics as metrics_module
from riskhub.metrics import Metrics


def test_an_idle_world_leaves_every_series_and_an_active_one_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    m = Metrics()
    now = datetime.now(UTC)
    for world in ("quiet", "busy"):
        m.start_series(world, "live")
        m.accepted.labels(world, "live").inc()
        m.freshness.observe(world, "live", now, now)
        m.observe_risk(world, "live", now, {"sigma_annual": 0.1, "var_99": 0.02, "es_975": 0.03})
        m.count_breach(world, "live", "var_99")
    clock[0] += 3600
    m.start_series("busy", "live")  # busy published again
    assert m.evict_idle(1800) == [("quiet", "live")]
    scrape = generate_latest(m.registry).decode()
    assert 'world_id="quiet"' not in scrape
    for name in ("snapshot_accepted_total", "snapshot_age_seconds", "risk_var_99", "limit_breaches_total"):
        assert f"risk_hub_{name}{{" in scrape and 'world_id="busy"' in scrape, name
    m.start_series("quiet", "live")  # it comes back: its counters start at 0 again
    assert (
        m.registry.get_sample_value("risk_hub_snapshot_dlq_total", {"world_id": "quiet", "stage": "live"})
        == 0
    )
