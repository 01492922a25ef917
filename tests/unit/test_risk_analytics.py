"""riskhub.risk.analytics: every figure against an independent computation.

The references are hand arithmetic (worked in the comments), plain numpy formulas, scipy.stats and
scikit-learn, never the module's own output.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.covariance import LedoitWolf

from riskhub.risk.analytics import (
    CONFIDENCE_LEVELS,
    FIGURE_NAMES,
    Finding,
    RiskReport,
    analyze,
    covariance_matrix,
    historical_var_es,
    ledoit_wolf,
    max_drawdown,
    portfolio_sigma,
)

SUFFIX = {0.95: "95", 0.975: "975", 0.99: "99"}
MIN_POINTS = {0.95: 20, 0.975: 40, 0.99: 100}  # ceil(1 / (1 - a)), by hand


def close(expected: float, rel: float = 1e-9) -> Any:
    return pytest.approx(expected, rel=rel, abs=1e-15)


def codes(report: RiskReport) -> dict[str, Finding]:
    return {finding.code: finding for finding in report.findings}


def factor_covariance(rng: np.random.Generator, n: int, factors: int = 3) -> np.ndarray:
    loadings = rng.normal(0.0, 0.01, size=(n, factors))
    return loadings @ loadings.T + np.diag(rng.uniform(1e-5, 4e-4, n))


def dense(ids: Sequence[str], matrix: np.ndarray) -> dict[str, Any]:
    return {"ids": list(ids), "matrix": matrix.tolist()}


def keyed(ids: Sequence[str], matrix: np.ndarray) -> dict[str, float]:
    """Upper triangle only: a pair given one way stands for both."""
    return {f"{a},{b}": float(matrix[i, j]) for i, a in enumerate(ids) for j, b in enumerate(ids) if i <= j}


def ref_drawdown(series: Sequence[float]) -> float:
    level = peak = 1.0
    worst = 0.0
    for r in series:
        level *= 1.0 + r
        peak = max(peak, level)
        worst = max(worst, 1.0 - level / peak)
    return worst


def ref_historical(r: np.ndarray, a: float) -> tuple[float, float]:
    q = np.quantile(r, 1.0 - a)
    return -float(q), -float(r[r <= q].mean())


# --- a two-asset portfolio, by hand -------------------------------------------------------------
#
# w = (0.6, 0.4); sigma_a = 0.2, sigma_b = 0.3, rho = 0.5, so
#   S = [[0.04, 0.03], [0.03, 0.09]]                    (0.2 * 0.3 * 0.5 = 0.03)
#   S w = (0.04*0.6 + 0.03*0.4, 0.03*0.6 + 0.09*0.4) = (0.036, 0.054)
#   w'S w = 0.6*0.036 + 0.4*0.054 = 0.0216 + 0.0216 = 0.0432
#   sigma = sqrt(0.0432) = 0.12 * sqrt(3) = 0.2078461
#   marginal = S w / sigma = (0.036, 0.054) / (0.12 sqrt 3) = (0.1 sqrt 3, 0.15 sqrt 3)
#            = (0.1732051, 0.2598076)
#   component = w * marginal = (0.06 sqrt 3, 0.06 sqrt 3) = (0.1039230, 0.1039230); sum = 0.12 sqrt 3 = sigma
#   percent = (0.5, 0.5)
#   sigma_annual = 0.2078461 * sqrt(252) = 0.2078461 * 15.874508 = 3.299455
# Normal tables: z(0.95) = 1.644854, phi = 0.103136; z(0.975) = 1.959964, phi = 0.058445;
#                z(0.99) = 2.326348, phi = 0.026652.
#   var_95 = 1.644854 * 0.2078461 = 0.341876     es_95 = 0.2078461 * 0.103136 / 0.05 = 0.428727
#   var_975 = 1.959964 * 0.2078461 = 0.407371    es_975 = 0.2078461 * 0.058445 / 0.025 = 0.485903
#   var_99 = 2.326348 * 0.2078461 = 0.483522     es_99 = 0.2078461 * 0.026652 / 0.01 = 0.553954
TWO_WEIGHTS = {"a": 0.6, "b": 0.4}
TWO_KEYED = {"a,a": 0.04, "a,b": 0.03, "b,b": 0.09}
TWO_HAND = {
    "sigma": 0.2078461,
    "sigma_annual": 3.299455,
    "var_95": 0.341876,
    "es_95": 0.428727,
    "var_975": 0.407371,
    "es_975": 0.485903,
    "var_99": 0.483522,
    "es_99": 0.553954,
}


def test_two_asset_figures_match_the_hand_computation() -> None:
    report = analyze(TWO_WEIGHTS, covariance=TWO_KEYED)
    assert report.method == "covariance"
    assert report.findings == []
    for name, value in TWO_HAND.items():
        assert report.figures[name] == pytest.approx(value, rel=2e-6), name


def test_two_asset_contributions_match_the_hand_computation() -> None:
    rows = analyze(TWO_WEIGHTS, covariance=TWO_KEYED).contributions
    assert [row["id"] for row in rows] == ["a", "b"]
    assert [row["weight"] for row in rows] == [0.6, 0.4]
    assert [row["marginal"] for row in rows] == pytest.approx([0.1732051, 0.2598076], rel=1e-6)
    assert [row["component"] for row in rows] == pytest.approx([0.1039230, 0.1039230], rel=1e-6)
    assert [row["percent"] for row in rows] == pytest.approx([0.5, 0.5], rel=1e-12)


def test_exposure_figures_of_a_long_short_book() -> None:
    # gross = 0.7 + 0.5 + 0.8 = 2.0; net = 0.7 - 0.5 + 0.8 = 1.0; largest |w| = 0.8
    figures = analyze({"a": 0.7, "b": -0.5, "c": 0.8}).figures
    assert figures["gross"] == close(2.0)
    assert figures["net"] == close(1.0)
    assert figures["max_weight"] == 0.8
    assert figures["positions"] == 3


def test_integer_weights_are_taken_as_numbers() -> None:
    report = analyze({"a": 1, "b": 0}, covariance={"a,a": 0.04, "b,b": 0.09, "a,b": 0.0})
    assert report.figures["sigma"] == close(0.2)


def test_every_figure_name_is_always_present() -> None:
    assert set(analyze({"a": 1.0}).figures) == set(FIGURE_NAMES)
    assert len(FIGURE_NAMES) == 22
    assert {"sigma", "var_99", "es_975", "hist_es_95", "max_drawdown", "worst_stress_loss"} <= set(
        FIGURE_NAMES
    )


def test_periods_per_year_scales_the_annual_sigma() -> None:
    figures = analyze(TWO_WEIGHTS, covariance=TWO_KEYED, periods_per_year=12).figures
    assert figures["sigma_annual"] == close(0.12 * math.sqrt(3) * math.sqrt(12))


# --- random portfolios against plain numpy / scipy ---------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_portfolio_figures_match_numpy_and_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, periods = int(rng.integers(2, 30)), int(rng.integers(100, 400))
    ids = [f"id{i}" for i in range(n)]
    matrix = factor_covariance(rng, n)
    w = rng.uniform(-0.5, 1.0, n)
    returns = rng.normal(0.0005, 0.01, size=(n, periods))
    report = analyze(
        dict(zip(ids, w.tolist(), strict=True)),
        covariance=dense(ids, matrix),
        realized_returns={k: returns[i].tolist() for i, k in enumerate(ids)},
    )
    figures = report.figures
    sigma = math.sqrt(w @ matrix @ w)
    assert report.method == "covariance"
    assert figures["sigma"] == close(sigma)
    for a in CONFIDENCE_LEVELS:
        z = norm.ppf(a)
        assert figures[f"var_{SUFFIX[a]}"] == close(z * sigma)
        assert figures[f"es_{SUFFIX[a]}"] == close(sigma * norm.pdf(z) / (1 - a))
    r = w @ returns
    for a in CONFIDENCE_LEVELS:
        var, es = ref_historical(r, a)
        assert figures[f"hist_var_{SUFFIX[a]}"] == close(var)
        assert figures[f"hist_es_{SUFFIX[a]}"] == close(es)
    assert figures["realized_sigma"] == close(float(np.std(r, ddof=1)))
    assert figures["realized_sigma_annual"] == close(float(np.std(r, ddof=1)) * math.sqrt(252))
    assert figures["max_drawdown"] == close(ref_drawdown(r.tolist()))
    marginal = matrix @ w / sigma
    assert [row["marginal"] for row in report.contributions] == pytest.approx(marginal.tolist(), rel=1e-9)
    assert [row["percent"] for row in report.contributions] == pytest.approx((w * marginal / sigma).tolist())


@pytest.mark.parametrize("seed", range(8))
def test_component_contributions_sum_to_sigma(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 60))
    ids = [f"x{i}" for i in range(n)]
    w = rng.normal(size=n)
    report = analyze(
        dict(zip(ids, w.tolist(), strict=True)), covariance=dense(ids, factor_covariance(rng, n))
    )
    components = [row["component"] for row in report.contributions]
    percents = [row["percent"] for row in report.contributions]
    assert math.fsum(components) == close(report.figures["sigma"])
    assert math.fsum(percents) == close(1.0)


def test_portfolio_sigma_is_the_square_root_of_the_quadratic_form() -> None:
    rng = np.random.default_rng(5)
    matrix = factor_covariance(rng, 7)
    w = rng.normal(size=7)
    assert portfolio_sigma(matrix, w) == close(
        math.sqrt(sum(w[i] * matrix[i, j] * w[j] for i in range(7) for j in range(7)))
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=1, max_size=260))
def test_historical_var_es_equal_numpy_quantile_and_tail_mean(series: list[float]) -> None:
    r = np.array(series)
    figures = historical_var_es(r)
    for a in CONFIDENCE_LEVELS:
        if len(series) < MIN_POINTS[a]:
            assert figures[f"hist_var_{SUFFIX[a]}"] is None and figures[f"hist_es_{SUFFIX[a]}"] is None
            continue
        var, es = ref_historical(r, a)
        assert figures[f"hist_var_{SUFFIX[a]}"] == var  # numpy's own interpolation, bit for bit
        assert figures[f"hist_es_{SUFFIX[a]}"] == pytest.approx(es, rel=1e-12, abs=1e-15)


def test_historical_var_es_of_twenty_points_by_hand() -> None:
    # Sorted: -0.10, -0.05, then 18 points of 0.01. q(0.05): index 19 * 0.05 = 0.95, so
    # q = -0.10 + 0.95 * (-0.05 - -0.10) = -0.0525: VaR 0.0525; only -0.10 <= q: ES 0.10.
    series = [0.01] * 9 + [-0.05] + [0.01] * 9 + [-0.10]
    figures = historical_var_es(np.array(series))
    assert figures["hist_var_95"] == close(0.0525)
    assert figures["hist_es_95"] == close(0.10)
    assert figures["hist_var_975"] is None and figures["hist_var_99"] is None


def test_max_drawdown_by_hand() -> None:
    # levels 1.1, 0.55, 0.66: peak 1.1, trough 0.55: 1 - 0.55 / 1.1 = 0.5
    assert max_drawdown(np.array([0.1, -0.5, 0.2])) == close(0.5)
    # levels 0.8, 0.88: the start (1) is the first peak: 1 - 0.8 = 0.2
    assert max_drawdown(np.array([-0.2, 0.1])) == close(0.2)
    assert max_drawdown(np.array([0.01, 0.02])) == 0.0
    assert max_drawdown(np.array([])) is None


# --- covariance forms and checks ---------------------------------------------------------------


def test_keyed_and_dense_covariance_give_the_same_numbers() -> None:
    rng = np.random.default_rng(11)
    ids = [f"s{i}" for i in range(9)]
    matrix = factor_covariance(rng, 9)
    weights = dict(zip(ids, rng.normal(size=9).tolist(), strict=True))
    from_dense = analyze(weights, covariance=dense(ids, matrix))
    from_keyed = analyze(weights, covariance=keyed(ids, matrix))
    lower = {f"{b},{a}": v for key, v in keyed(ids, matrix).items() for a, b in [key.split(",")]}
    from_lower = analyze(weights, covariance=lower)
    for report in (from_keyed, from_lower):
        assert report.method == "covariance"
        for name in FIGURE_NAMES:
            expected = from_dense.figures[name]
            assert report.figures[name] == (None if expected is None else pytest.approx(expected, rel=1e-12))
        for row, expected_row in zip(report.contributions, from_dense.contributions, strict=True):
            assert row["id"] == expected_row["id"]
            for field in ("weight", "marginal", "component", "percent"):
                assert row[field] == pytest.approx(expected_row[field], rel=1e-12)


def test_dense_covariance_with_extra_ids_in_another_order_selects_the_weight_ids() -> None:
    rng = np.random.default_rng(3)
    big = factor_covariance(rng, 5)
    given = ["e", "c", "a", "d", "b"]
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    order = [given.index(k) for k in weights]
    sub = big[np.ix_(order, order)]
    report = analyze(weights, covariance=dense(given, big))
    w = np.array(list(weights.values()))
    assert report.figures["sigma"] == close(math.sqrt(w @ sub @ w))
    matrix, missing = covariance_matrix(list(weights), dense(given, big))
    assert missing == []
    np.testing.assert_array_equal(matrix, sub)


def test_covariance_not_covering_every_id_falls_back_and_names_the_missing() -> None:
    report = analyze({"a": 0.5, "b": 0.3, "c": 0.2}, covariance={"a,a": 0.04, "b,b": 0.09, "a,b": 0.01})
    findings = codes(report)
    assert findings["covariance_incomplete"].severity == "warn"
    assert "c" in findings["covariance_incomplete"].message
    assert report.method == "none"
    assert report.figures["sigma"] is None and report.figures["var_99"] is None
    assert findings["no_risk_model"].severity == "warn"


def test_non_psd_covariance_is_a_finding_and_is_not_used() -> None:
    # rho(a,b) = rho(a,c) = 0.9 but rho(b,c) = -0.9: no such three assets exist.
    ids = ["a", "b", "c"]
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    vol = np.array([0.1, 0.2, 0.3])
    matrix = corr * np.outer(vol, vol)
    smallest = float(np.linalg.eigvalsh(matrix)[0])
    rng = np.random.default_rng(0)
    returns = {k: rng.normal(0, 0.01, 10).tolist() for k in ids}
    report = analyze({"a": 0.4, "b": 0.3, "c": 0.3}, covariance=dense(ids, matrix), realized_returns=returns)
    finding = codes(report)["covariance_not_psd"]
    assert smallest < 0
    assert finding.severity == "warn"
    assert f"{smallest:.6g}" in finding.message
    assert report.method == "ledoit_wolf"  # 10 common points >= 2 x 3 ids


def test_correlation_beyond_one_and_nonpositive_variance_are_findings() -> None:
    # cov(a,b) = 0.1 with sigma_a = 0.2, sigma_b = 0.3: rho = 0.1 / 0.06 = 1.67
    report = analyze({"a": 0.5, "b": 0.5}, covariance={"a,a": 0.04, "b,b": 0.09, "a,b": 0.1})
    assert codes(report)["correlation_out_of_range"].severity == "warn"
    assert "covariance_not_psd" in codes(report)
    # a zero variance (and no covariance with it) is PSD, so still used: the finding tells
    report = analyze({"a": 0.5, "b": 0.5}, covariance={"a,a": 0.0, "b,b": 0.09, "a,b": 0.0})
    assert codes(report)["nonpositive_variance"].severity == "warn"
    assert report.method == "covariance"
    assert report.figures["sigma"] == close(0.5 * 0.3)


def test_keyed_pairs_given_neither_way_count_as_zero_with_a_finding() -> None:
    # sigma = sqrt(0.6^2 * 0.04 + 0.4^2 * 0.09) = sqrt(0.0144 + 0.0144) = sqrt(0.0288) = 0.1697056
    report = analyze(TWO_WEIGHTS, covariance={"a,a": 0.04, "b,b": 0.09})
    assert report.method == "covariance"
    assert report.figures["sigma"] == pytest.approx(0.1697056, rel=1e-6)
    assert codes(report)["covariance_pairs_missing"].severity == "warn"


def test_a_valid_covariance_has_no_findings() -> None:
    rng = np.random.default_rng(21)
    ids = [f"s{i}" for i in range(30)]
    report = analyze(dict.fromkeys(ids, 1 / 30), covariance=dense(ids, factor_covariance(rng, 30)))
    assert report.findings == []


def test_zero_sigma_leaves_contributions_unknown() -> None:
    report = analyze({"a": 1.0, "b": 0.0}, covariance={"a,a": 0.0, "b,b": 0.04, "a,b": 0.0})
    assert report.figures["sigma"] == 0.0
    assert report.figures["var_99"] == 0.0
    assert "zero_sigma" in codes(report)
    assert all(row["component"] is None and row["percent"] is None for row in report.contributions)


# --- the fallback ladder -----------------------------------------------------------------------


def test_fallback_uses_ledoit_wolf_of_the_aligned_series_with_enough_points() -> None:
    rng = np.random.default_rng(8)
    ids = ["a", "b", "c", "d"]
    lengths = [12, 10, 9, 8]  # common: the last 8 points = 2 x 4 ids
    series = {k: rng.normal(0, 0.01, size).tolist() for k, size in zip(ids, lengths, strict=True)}
    w = np.array([0.4, 0.3, 0.2, 0.1])
    report = analyze(dict(zip(ids, w.tolist(), strict=True)), realized_returns=series)
    x = np.array([series[k][-8:] for k in ids]).T
    reference = LedoitWolf().fit(x).covariance_
    assert report.method == "ledoit_wolf"
    assert report.figures["sigma"] == close(math.sqrt(w @ reference @ w))
    assert report.figures["var_99"] == close(norm.ppf(0.99) * math.sqrt(w @ reference @ w))
    assert codes(report)["covariance_missing"].severity == "info"
    assert codes(report)["unequal_history"].severity == "info"


@pytest.mark.parametrize("shape", [(60, 5), (40, 20), (10, 30), (200, 1), (3, 2), (500, 50)])
def test_ledoit_wolf_equals_scikit_learn(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    x = rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1])) * 0.01 + 0.001
    np.testing.assert_allclose(ledoit_wolf(x), LedoitWolf().fit(x).covariance_, rtol=1e-10, atol=1e-18)


def test_fallback_with_too_few_points_assumes_correlation_one() -> None:
    rng = np.random.default_rng(9)
    series = {"a": rng.normal(0, 0.01, 7).tolist(), "b": rng.normal(0, 0.02, 5).tolist(), "c": [0.01, -0.02]}
    weights = {"a": 0.7, "b": -0.2, "c": 0.5}
    report = analyze(weights, realized_returns=series)
    own = {k: float(np.std(v, ddof=1)) for k, v in series.items()}  # each id's own full series
    sigma = sum(abs(w) * own[k] for k, w in weights.items())
    assert report.method == "fallback_corr1"
    assert report.figures["sigma"] == close(sigma)
    assert report.figures["es_95"] == close(sigma * norm.pdf(norm.ppf(0.95)) / 0.05)
    rows = {row["id"]: row for row in report.contributions}
    for k, w in weights.items():
        assert rows[k]["component"] == close(abs(w) * own[k])
        assert rows[k]["marginal"] == close(math.copysign(own[k], w))
        assert rows[k]["percent"] == close(abs(w) * own[k] / sigma)
    assert math.fsum(row["component"] for row in report.contributions) == close(sigma)


def test_no_risk_model_without_covariance_or_two_points_per_id() -> None:
    report = analyze({"a": 0.5, "b": 0.5}, realized_returns={"a": [0.01, 0.02, 0.03], "b": [0.01]})
    assert report.method == "none"
    assert codes(report)["no_risk_model"].severity == "warn"
    assert all(report.figures[name] is None for name in ("sigma", "sigma_annual", "var_95", "es_99"))
    assert all(row["marginal"] is None for row in report.contributions)


def test_a_single_series_is_the_portfolio_and_gives_history_but_no_risk_model() -> None:
    rng = np.random.default_rng(12)
    r = rng.normal(0, 0.01, 120)
    report = analyze({"a": 0.5, "b": 0.5}, realized_returns=r.tolist())
    assert report.method == "none"
    assert report.figures["hist_var_99"] == close(-float(np.quantile(r, 1 - 0.99)))
    assert report.figures["realized_sigma"] == close(float(np.std(r, ddof=1)))
    assert report.figures["max_drawdown"] == close(ref_drawdown(r.tolist()))


def test_a_usable_covariance_wins_over_realized_returns() -> None:
    rng = np.random.default_rng(13)
    returns = {k: rng.normal(0, 0.05, 50).tolist() for k in TWO_WEIGHTS}
    report = analyze(TWO_WEIGHTS, covariance=TWO_KEYED, realized_returns=returns)
    assert report.method == "covariance"
    assert report.figures["sigma"] == pytest.approx(TWO_HAND["sigma"], rel=2e-6)


# --- history -----------------------------------------------------------------------------------


def test_insufficient_history_leaves_the_high_levels_unknown() -> None:
    rng = np.random.default_rng(14)
    r = rng.normal(0, 0.01, 50)  # enough for 95% (20) and 97.5% (40), not for 99% (100)
    report = analyze({"a": 1.0}, realized_returns={"a": r.tolist()})
    figures = report.figures
    assert figures["hist_var_95"] == close(ref_historical(r, 0.95)[0])
    assert figures["hist_es_975"] == close(ref_historical(r, 0.975)[1])
    assert figures["hist_var_99"] is None and figures["hist_es_99"] is None
    assert "insufficient_history" in codes(report)
    short = analyze({"a": 1.0}, realized_returns={"a": r[:19].tolist()}).figures
    assert all(short[f"hist_{kind}_{SUFFIX[a]}"] is None for kind in ("var", "es") for a in CONFIDENCE_LEVELS)
    assert short["realized_sigma"] == close(float(np.std(r[:19], ddof=1)))
    one = analyze({"a": 1.0}, realized_returns={"a": [0.01]}).figures
    assert one["realized_sigma"] is None and one["max_drawdown"] == 0.0


def test_unequal_series_are_aligned_on_their_last_common_points() -> None:
    rng = np.random.default_rng(15)
    a, b = rng.normal(0, 0.01, 130), rng.normal(0, 0.02, 104)
    weights = {"a": 0.7, "b": 0.3, "c": 0.0}
    report = analyze(weights, realized_returns={"a": a.tolist(), "b": b.tolist(), "zz": [0.5] * 300})
    r = 0.7 * a[-104:] + 0.3 * b  # "zz" is not a weight id: ignored
    assert codes(report)["unequal_history"].severity == "info"
    assert codes(report)["returns_incomplete"].severity == "warn"  # no series for "c"
    for level in CONFIDENCE_LEVELS:
        var, es = ref_historical(r, level)
        assert report.figures[f"hist_var_{SUFFIX[level]}"] == close(var)
        assert report.figures[f"hist_es_{SUFFIX[level]}"] == close(es)
    assert report.figures["realized_sigma"] == close(float(np.std(r, ddof=1)))


# --- stress ------------------------------------------------------------------------------------


def test_worst_stress_is_the_largest_loss_of_the_pnl_convention() -> None:
    report = analyze({"a": 1.0}, stress={"rates_up": {"pnl": -0.08}, "rates_down": {"pnl": -0.01}})
    assert report.worst_stress == "rates_up"
    assert report.figures["worst_stress_loss"] == close(0.08)
    assert [row["loss"] for row in report.stress] == pytest.approx([0.08, 0.01])


def test_stress_loss_follows_pnl_then_return_then_drawdown_then_loss() -> None:
    # shocks: pnl = 0.6 * -0.1 + 0.4 * 0.05 = -0.06 + 0.02 = -0.04 (wins over the given pnl)
    stress = {
        "shocked": {"shocks": {"a": -0.1, "b": 0.05}, "pnl": 0.5},
        "by_return": {"return": -0.05, "pnl_note": 3.0},
        "by_drawdown": {"max_drawdown": 0.3},
        "by_loss": {"loss": 0.12},
        "return_beats_drawdown": {"return": 0.02, "max_drawdown": 0.9},
        "unknown": {"vix": 45.0},
    }
    report = analyze(TWO_WEIGHTS, stress=stress)
    rows = {row["scenario"]: row for row in report.stress}
    assert rows["shocked"]["pnl"] == close(-0.04)
    assert rows["shocked"]["loss"] == close(0.04)
    assert rows["shocked"]["metrics"] == {"pnl": 0.5}  # as sent, without the shocks
    assert rows["by_return"]["loss"] == close(0.05) and rows["by_return"]["pnl"] is None
    assert rows["by_drawdown"]["loss"] == close(0.3)
    assert rows["by_loss"]["loss"] == close(0.12)
    assert rows["return_beats_drawdown"]["loss"] == close(-0.02)
    assert rows["unknown"]["loss"] is None and rows["unknown"]["metrics"] == {"vix": 45.0}
    assert report.worst_stress == "by_drawdown"
    assert report.figures["worst_stress_loss"] == close(0.3)
    assert "unknown" in codes(report)["stress_unranked"].message


def test_no_ranked_scenario_means_no_worst_stress() -> None:
    report = analyze({"a": 1.0}, stress={"odd": {"vix": 40.0}})
    assert report.worst_stress is None and report.figures["worst_stress_loss"] is None
    assert analyze({"a": 1.0}).stress == []


# --- float range -------------------------------------------------------------------------------


def test_weights_of_1e308_give_none_figures_and_no_warnings() -> None:
    weights = {"a": 1e308, "b": -1e308, "c": 1.0}  # sums to 1: a valid snapshot
    rng = np.random.default_rng(16)
    matrix = factor_covariance(rng, 3)
    returns = {k: rng.normal(0, 0.01, 30).tolist() for k in weights}
    stress = {"crash": {"shocks": {"a": 2.0}}, "mild": {"pnl": -0.01}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reports = [
            analyze(
                weights, covariance=dense(list(weights), matrix), realized_returns=returns, stress=stress
            ),
            analyze(weights, realized_returns=returns, stress=stress),  # Ledoit-Wolf
            analyze(weights, realized_returns={k: v[:4] for k, v in returns.items()}),  # correlation 1
        ]
    assert [report.method for report in reports] == ["covariance", "ledoit_wolf", "fallback_corr1"]
    for report in reports[:2]:  # w'S w = 1e616-ish: past float range
        assert report.figures["sigma"] is None and report.figures["var_99"] is None
        assert all(row["component"] is None for row in report.contributions)
    # correlation 1: sigma = 1e308 * (sigma_a + sigma_b) + sigma_c stays in range
    own = [float(np.std(v[:4], ddof=1)) for v in returns.values()]
    assert reports[2].figures["sigma"] == close(1e308 * own[0] + 1e308 * own[1] + own[2])
    for report in reports:
        figures = report.figures
        assert figures["gross"] is None  # 2e308
        assert figures["net"] == close(1.0) and figures["max_weight"] == 1e308
        assert all(v is None or math.isfinite(v) for v in figures.values())
        assert codes(report)["out_of_float_range"].severity == "warn"
        json.dumps(report.to_json(), allow_nan=False)
    crash = reports[0].stress[0]
    assert crash["loss"] is None and reports[0].worst_stress == "mild"


# --- the report --------------------------------------------------------------------------------


def test_report_json_is_plain_and_complete() -> None:
    rng = np.random.default_rng(17)
    returns = {k: rng.normal(0, 0.01, 30).tolist() for k in TWO_WEIGHTS}
    report = analyze(TWO_WEIGHTS, realized_returns=returns, stress={"s": {"pnl": -0.02}})
    document = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert set(document) == {"method", "figures", "contributions", "stress", "worst_stress", "findings"}
    assert document["method"] == "ledoit_wolf"
    assert set(document["figures"]) == set(FIGURE_NAMES)
    assert document["stress"] == [{"scenario": "s", "loss": 0.02, "pnl": -0.02, "metrics": {"pnl": -0.02}}]
    assert {"code": "covariance_missing", "severity": "info"}.items() <= document["findings"][0].items()
    assert set(document["contributions"][0]) == {"id", "weight", "marginal", "component", "percent"}


def test_analyze_keeps_its_inputs_unchanged() -> None:
    covariance = dense(["a", "b"], np.array([[0.04, 0.03], [0.03, 0.09]]))
    stress = {"s": {"shocks": {"a": -0.1}, "pnl": 1.0}}
    before = json.dumps([covariance, stress])
    analyze(TWO_WEIGHTS, covariance=covariance, stress=stress)
    assert json.dumps([covariance, stress]) == before
