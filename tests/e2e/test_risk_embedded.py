"""Risk results end to end on embedded defaults: a real `riskhub serve` (relay and consumer in the
process), real HTTP, and `riskhub risk show` as an operator runs it."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from scipy.stats import norm

from live_hub import metric, operator_env, run_riskhub

from conftest import SAMPLE, TOKEN, ServerProcess

WRITE = {"authorization": f"Bearer {TOKEN}", "x-actor": "gateway", "content-type": "application/json"}
READ = {"authorization": f"Bearer {TOKEN}"}


def post(server: ServerProcess, world: str, doc: dict[str, Any], stage: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/risk-hub/worlds/{world}/snapshots",
        content=json.dumps(doc),
        headers={**WRITE, "x-stage": stage},
    )


def risk_when_done(server: ServerProcess, world: str, within_s: float) -> tuple[dict[str, Any], float]:
    """Poll the results API until ``done``; the answer and how long it took."""
    start = time.monotonic()
    while True:
        answer = httpx.get(f"{server.url}/risk-hub/worlds/{world}/risk/latest", headers=READ).json()
        elapsed = time.monotonic() - start
        if answer.get("status") == "done" or elapsed > within_s:
            return answer, elapsed
        time.sleep(0.01)


def fresh_sample(version: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.update(version=version, ttl_sec=3600)
    doc.pop("provenance")
    return doc


def test_a_posts_risk_is_on_the_api_within_a_second_and_computed_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    assert post(server, "w1", fresh_sample("v1"), "paper").status_code == 201
    answer, elapsed = risk_when_done(server, "w1", within_s=1.0)
    assert answer["status"] == "done", f"still {answer['status']} after {elapsed:.2f}s"
    # 3 returns per id are fewer than 2 x 2 for Ledoit-Wolf: correlation 1, sum of |w_i| sigma_i
    sigma = 0.6 * statistics.stdev([0.01, -0.005, 0.002]) + 0.4 * statistics.stdev([0.008, -0.004, 0.001])
    assert answer["method"] == "fallback_corr1"
    assert math.isclose(answer["figures"]["sigma"], sigma, rel_tol=1e-12)
    assert math.isclose(answer["figures"]["var_99"], norm.ppf(0.99) * sigma, rel_tol=1e-12)
    for _ in range(2):
        assert post(server, "w1", fresh_sample("v1"), "paper").status_code == 200
    time.sleep(0.3)  # a duplicate would have been relayed and handled by now
    assert metric(server, "risk_hub_worker_duration_seconds_count", worker="risk") == 1
    print(f"\nrisk results on the API {elapsed * 1000:.0f} ms after the POST's answer")


def test_a_live_breach_is_on_the_api_the_metrics_and_risk_show(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text('[[limit]]\nstage = "live"\nmetric = "var_99"\nmax = 0.001\nseverity = "breach"\n')
    server = server_factory(RISKHUB_LIMITS_FILE=str(limits))
    doc = {**fresh_sample("v1"), "constraints": {"max_weight": 0.55}}
    assert post(server, "w9", doc, "live").status_code == 201
    answer, _ = risk_when_done(server, "w9", within_s=2.0)
    assert {(b["metric"], b["source"]) for b in answer["breaches"]} == {
        ("var_99", "limits"),
        ("max_weight", "constraints"),
    }
    assert answer["blocking"] is True
    assert metric(server, "risk_hub_limit_breaches_total", world_id="w9", stage="live", metric="var_99") == 1
    assert metric(server, "risk_hub_risk_var_99", world_id="w9", stage="live") == answer["figures"]["var_99"]
    env = operator_env(HUB_TOKEN=TOKEN)
    shown = run_riskhub("risk", "show", "--world", "w9", "--base-url", server.url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "status done" in shown.stdout and "var_99" in shown.stdout and "constraints" in shown.stdout
    as_json = run_riskhub("risk", "show", "--world", "w9", "--base-url", server.url, "--json", env=env)
    assert (
        json.loads(as_json.stdout)
        == httpx.get(f"{server.url}/risk-hub/worlds/w9/risk/latest", headers=READ).json()
    )
    missing = run_riskhub("risk", "show", "--world", "nowhere", "--base-url", server.url, env=env)
    assert missing.returncode == 2 and "no snapshot for world 'nowhere'" in missing.stderr
