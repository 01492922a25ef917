"""The results API and live breaches, on embedded defaults and on PostgreSQL + Redis + S3.

Figures are checked against independent computations written out here (statistics, numpy,
scipy), never against the hub's own output.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

import flaky_workers
from riskhub.contract.canonical import canonical_json, loads_exact
from riskhub.events import LIMIT_BREACHED, event_id_for

from conftest import FakeClock, HubClient, sample_snapshot

LIMITS = """
[[limit]]
world = "*"
stage = "*"
metric = "sigma_annual"
max = 10.0
severity = "warn"

[[limit]]
world = "*"
stage = "live"
metric = "var_99"
max = 0.001
severity = "breach"
"""


def covariance_snapshot(version: str, **changes: Any) -> dict[str, Any]:
    """Two assets with a full covariance: sigma worked by hand below."""
    body = sample_snapshot(version=version, ttl_sec=600)
    body.pop("realized_returns")
    body.pop("provenance", None)  # actor and stage come from the headers
    body["weights"] = {"strategy_a": 0.6, "strategy_b": 0.4}
    body["covariance"] = {"strategy_a,strategy_a": 0.04, "strategy_b,strategy_b": 0.09}
    body["covariance"]["strategy_a,strategy_b"] = 0.018  # given one way: stands for both
    body.update(changes)
    return body


# w'Sw = 0.36*0.04 + 0.16*0.09 + 2*0.6*0.4*0.018 = 0.0144 + 0.0144 + 0.00864 = 0.03744
HAND_SIGMA = math.sqrt(0.03744)


async def risk(hub: HubClient, world: str, path: str = "/latest", **params: Any) -> Any:
    response = await hub.get(f"/risk-hub/worlds/{world}/risk{path}", **params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_risk_is_pending_until_computed_then_done_with_the_figures(hub: HubClient) -> None:
    assert (await hub.post("w1", covariance_snapshot("v1"))).status_code == 201
    pending = await risk(hub, "w1")
    assert (pending["status"], pending["version"], pending["figures"]) == ("pending", "v1", None)
    await hub.drain()
    done = await risk(hub, "w1")
    assert (done["status"], done["method"], done["stage"]) == ("done", "covariance", "paper")
    figures = done["figures"]
    assert figures["sigma"] == pytest.approx(HAND_SIGMA, rel=1e-12)
    assert figures["sigma_annual"] == pytest.approx(HAND_SIGMA * math.sqrt(252), rel=1e-12)
    assert figures["var_99"] == pytest.approx(norm.ppf(0.99) * HAND_SIGMA, rel=1e-12)
    assert figures["es_975"] == pytest.approx(HAND_SIGMA * norm.pdf(norm.ppf(0.975)) / 0.025, rel=1e-12)
    components = {row["id"]: row["component"] for row in done["contributions"]}
    # component_a = 0.6 * (0.6*0.04 + 0.4*0.018) / sigma = 0.6 * 0.0312 / sigma
    assert components["strategy_a"] == pytest.approx(0.6 * 0.0312 / HAND_SIGMA, rel=1e-12)
    assert sum(components.values()) == pytest.approx(HAND_SIGMA, rel=1e-12)
    assert done["computed_at"] is not None and done["breaches"] == []
    by_version = await risk(hub, "w1", "", version="v1")
    assert by_version == done


async def test_the_fallback_names_its_method_when_there_is_no_covariance(hub: HubClient) -> None:
    """The runbook sample: 3 returns per id, fewer than 2 x 2 for Ledoit-Wolf: correlation 1."""
    assert (await hub.post("w1", sample_snapshot())).status_code == 201
    await hub.drain()
    done = await risk(hub, "w1")
    a, b = statistics.stdev([0.01, -0.005, 0.002]), statistics.stdev([0.008, -0.004, 0.001])
    assert done["method"] == "fallback_corr1"
    assert done["figures"]["sigma"] == pytest.approx(0.6 * a + 0.4 * b, rel=1e-12)
    assert {f["code"] for f in done["findings"]} >= {"covariance_missing"}
    # stress: max_drawdown is a loss as given; the worst is the largest
    assert (done["worst_stress"], done["figures"]["worst_stress_loss"]) == ("crash", 0.25)


async def test_keyed_and_dense_covariance_give_the_same_figures(hub: HubClient) -> None:
    dense = {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.018], [0.018, 0.09]]}
    assert (await hub.post("w1", covariance_snapshot("keyed"))).status_code == 201
    assert (await hub.post("w2", covariance_snapshot("dense", covariance=dense))).status_code == 201
    await hub.drain()
    keyed, by_matrix = await risk(hub, "w1"), await risk(hub, "w2")
    assert keyed["figures"] == by_matrix["figures"]
    assert by_matrix["figures"]["sigma"] == pytest.approx(HAND_SIGMA, rel=1e-12)


async def test_a_covariance_by_ref_gives_the_same_figures_as_inline(make_hub: Callable[..., Any]) -> None:
    """Offloaded by the hub (over the inline threshold) and offloaded by the producer (its own
    ref into the hub's blob store): the worker resolves both."""
    async with make_hub(inline_cov_threshold=16) as hub:
        assert (await hub.post("w1", covariance_snapshot("hub-offloaded"))).status_code == 201
        stored = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
        assert "covariance" in stored["hub_offloaded"] and "covariance" not in stored
        part = canonical_json(covariance_snapshot("x")["covariance"])
        producer = covariance_snapshot("producer-ref")
        producer["covariance_ref"] = await hub.parts.blobs.put(part)
        del producer["covariance"]
        assert (await hub.post("w2", producer)).status_code == 201
        await hub.drain()
        for world in ("w1", "w2"):
            done = await risk(hub, world)
            assert (done["status"], done["method"]) == ("done", "covariance")
            assert done["figures"]["sigma"] == pytest.approx(HAND_SIGMA, rel=1e-12)


async def test_a_duplicate_post_computes_nothing_again(hub: HubClient) -> None:
    for _ in range(3):
        assert (await hub.post("w1", covariance_snapshot("v1"))).status_code in (200, 201)
    await hub.drain()
    assert hub.metric("risk_hub_worker_duration_seconds_count", worker="risk") == 1
    assert hub.metric("risk_hub_snapshot_dedupe_total", world_id="w1", stage="paper") == 2


async def test_history_is_newest_first_with_figures(hub: HubClient) -> None:
    older = covariance_snapshot("v1", as_of="2025-01-01T00:00:00Z")
    newer = covariance_snapshot(
        "v2", as_of="2025-01-02T00:00:00Z", weights={"strategy_a": 1.0, "strategy_b": 0}
    )
    assert (await hub.post("w1", older)).status_code == 201
    assert (await hub.post("w1", newer)).status_code == 201
    await hub.drain()
    history = (await risk(hub, "w1", "/history", limit=10))["history"]
    assert [(p["version"], p["status"]) for p in history] == [("v2", "done"), ("v1", "done")]
    assert history[0]["figures"]["sigma"] == pytest.approx(0.2, rel=1e-12)  # sqrt(0.04)
    assert "contributions" not in history[0]


async def test_risk_reads_need_a_token_and_name_the_version(hub: HubClient) -> None:
    assert (await hub.get("/risk-hub/worlds/w1/risk/latest", token=None)).status_code == 401
    assert (await hub.get("/risk-hub/worlds/w1/risk/latest")).status_code == 404
    missing = await hub.get("/risk-hub/worlds/w1/risk")
    assert (missing.status_code, missing.json()["error"]["field"]) == (422, "version")
    assert (await hub.get("/risk-hub/worlds/w1/risk", version="nope")).status_code == 404
    bad_stage = await hub.get("/risk-hub/worlds/w1/risk/latest", stage="prod")
    assert (bad_stage.status_code, bad_stage.json()["error"]["field"]) == (422, "stage")


async def test_a_live_breach_is_on_the_api_the_metrics_and_one_event(
    make_hub: Callable[..., Any], tmp_path: Path
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(LIMITS)
    async with make_hub(limits_file=limits) as hub:
        body = covariance_snapshot("v1", constraints={"max_weight": 0.5})
        assert (await hub.post("w1", body, stage="live")).status_code == 201
        await hub.drain()
        done = await risk(hub, "w1")
        breached = {(b["metric"], b["source"], b["severity"]) for b in done["breaches"]}
        # var_99 = 2.326 * 0.1935 = 0.45 > 0.001; |0.6| > 0.5; sigma_annual 3.07 < 10: no warn
        assert breached == {("var_99", "limits", "breach"), ("max_weight", "constraints", "breach")}
        assert done["blocking"] is True
        assert hub.metric("risk_hub_limit_breaches_total", world_id="w1", stage="live", metric="var_99") == 1
        assert hub.metric("risk_hub_risk_var_99", world_id="w1", stage="live") == pytest.approx(
            norm.ppf(0.99) * HAND_SIGMA, rel=1e-12
        )
        events = [r for r in hub.parts.memory_bus.recent(hub.parts.settings.controlbus_topic)]
        breaches = [loads_exact(r.value) for r in events if b"risk_limit_breached" in r.value]
        assert sorted(e["data"]["metric"] for e in breaches) == ["max_weight", "var_99"]
        var = next(e for e in breaches if e["data"]["metric"] == "var_99")
        snapshot = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
        key = f"w1|v1|{snapshot['hash']}|var_99"
        assert (var["type"], var["id"], var["data"]["idempotency_key"]) == (
            LIMIT_BREACHED,
            event_id_for(key),
            key,
        )
        assert (var["data"]["stage"], var["data"]["actor"], var["data"]["max"]) == ("live", "gateway", 0.001)
        # the same snapshot event delivered again announces nothing again
        await hub.parts.store.enqueue_event(_snapshot_event_again(snapshot))
        await hub.drain()
        again = [r for r in hub.parts.memory_bus.recent(hub.parts.settings.controlbus_topic)]
        assert sum(b"risk_limit_breached" in r.value for r in again) == 2


async def test_a_paper_breach_is_reported_but_not_announced(
    make_hub: Callable[..., Any], tmp_path: Path
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(LIMITS.replace('stage = "live"', 'stage = "*"'))
    async with make_hub(limits_file=limits) as hub:
        assert (await hub.post("w1", covariance_snapshot("v1"))).status_code == 201
        await hub.drain()
        done = await risk(hub, "w1")
        assert [b["metric"] for b in done["breaches"]] == ["var_99"] and done["blocking"] is False
        recent = hub.parts.memory_bus.recent(hub.parts.settings.controlbus_topic)
        assert not any(b"risk_limit_breached" in r.value for r in recent)


async def test_a_dead_lettered_snapshot_is_failed_with_its_error(make_hub: Callable[..., Any]) -> None:
    flaky_workers.FAILING_VERSIONS.add("doomed")
    try:
        async with make_hub(workers=["riskhub.risk.workers:DEFAULT_WORKERS", "flaky_workers:FLAKY"]) as hub:
            assert (await hub.post("w1", covariance_snapshot("doomed"))).status_code == 201
            await hub.drain()
            failed = await risk(hub, "w1")
            assert failed["status"] == "failed"
            assert failed["error"] == "RuntimeError: permanent failure"
            assert failed["figures"] is None
    finally:
        flaky_workers.FAILING_VERSIONS.discard("doomed")


async def test_the_latest_risk_follows_the_latest_snapshot_and_expiry(make_hub: Callable[..., Any]) -> None:
    clock = FakeClock()
    async with make_hub(clock=clock) as hub:
        assert (await hub.post("w1", covariance_snapshot("v1", ttl_sec=5))).status_code == 201
        await hub.drain()
        assert (await risk(hub, "w1"))["version"] == "v1"
        clock.advance(10)
        expired = await hub.get("/risk-hub/worlds/w1/risk/latest")
        assert (expired.status_code, expired.json()["error"]["code"]) == (404, "snapshot_expired")
        assert (await risk(hub, "w1", "", version="v1"))["expired"] is True


def _snapshot_event_again(snapshot: dict[str, Any]) -> Any:
    from riskhub.events import snapshot_event

    key = f"{snapshot['world_id']}|{snapshot['version']}|{snapshot['hash']}|gateway|live"
    return snapshot_event(snapshot["world_id"], snapshot["version"], key)


def test_hand_sigma_is_what_numpy_says() -> None:
    """The hand arithmetic above, once more with numpy."""
    w = np.array([0.6, 0.4])
    s = np.array([[0.04, 0.018], [0.018, 0.09]])
    assert math.sqrt(w @ s @ w) == pytest.approx(HAND_SIGMA, rel=1e-15)
