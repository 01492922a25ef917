"""The risk workers' math: hand-computed cases, and properties against plain reference versions.

The references below are deliberately naive (one term at a time, math.fsum or exact fractions) so
that they are obviously right; the production functions are tuned for speed and must agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskhub.risk import measures as risk

IDS = ["a", "b", "c", "d", "e"]
ids = st.sampled_from(IDS)
weight_values = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)
return_values = st.floats(min_value=-0.99, max_value=1.0, allow_nan=False)
weights_maps = st.dictionaries(ids, weight_values)
series = st.lists(return_values, max_size=30)


def close(expected: Any) -> Any:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- references -------------------------------------------------------------------------------


def ref_portfolio_returns(
    weights: Mapping[str, float], returns: Mapping[str, Sequence[float]]
) -> list[float]:
    held = [k for k in returns if k in weights]
    if not held:
        return []
    length = min(len(returns[k]) for k in held)
    return [math.fsum(weights[k] * returns[k][t] for k in held) for t in range(length)]


def ref_max_drawdown(returns: Sequence[float]) -> float:
    levels = [1.0]
    for r in returns:
        levels.append(levels[-1] * (1.0 + r))
    return max((1.0 - levels[j] / max(levels[: j + 1]) for j in range(len(levels))), default=0.0)


def ref_keyed_variance(weights: Mapping[str, float], covariance: Mapping[str, float]) -> float:
    """Expand to every ordered pair, then sum w_a * w_b * S_ab."""
    full: dict[tuple[str, str], float] = {}
    for key, value in covariance.items():
        a, b = key.split(",")
        full[(a, b)] = value
    for a, b in list(full):
        full.setdefault((b, a), full[(a, b)])
    return math.fsum(weights.get(a, 0.0) * weights.get(b, 0.0) * v for (a, b), v in full.items())


def ref_dense_variance(weights: Mapping[str, float], names: list[str], matrix: list[list[float]]) -> float:
    n = len(names)
    return math.fsum(
        weights.get(names[i], 0.0) * weights.get(names[j], 0.0) * matrix[i][j]
        for i in range(n)
        for j in range(n)
    )


# --- exposure -----------------------------------------------------------------------------------


def test_exposure_by_hand() -> None:
    assert risk.exposure({"a": 0.5, "b": -0.25, "c": 0.75}) == {
        "gross": close(1.5),
        "net": close(1.0),
        "max_abs_weight": 0.75,
        "positions": 3.0,
    }
    assert risk.exposure({}) == {"gross": 0.0, "net": 0.0, "max_abs_weight": 0.0, "positions": 0.0}


@given(weights_maps)
def test_exposure_matches_reference(weights: dict[str, float]) -> None:
    result = risk.exposure(weights)
    assert result["gross"] == close(math.fsum(abs(w) for w in weights.values()))
    assert result["net"] == close(math.fsum(weights.values()))
    assert result["max_abs_weight"] == max((abs(w) for w in weights.values()), default=0.0)
    assert result["positions"] == len(weights)


# --- portfolio_returns --------------------------------------------------------------------------


def test_portfolio_returns_uses_the_shortest_series() -> None:
    returns = {"a": [0.02, -0.01, 0.04], "b": [0.0, 0.03]}
    assert risk.portfolio_returns({"a": 0.5, "b": 0.5}, returns) == close([0.01, 0.01])


def test_portfolio_returns_ignores_series_without_weight() -> None:
    # "z" has no weight: it counts as 0 and does not shorten the result either.
    assert risk.portfolio_returns({"a": 2.0}, {"a": [0.1, 0.2], "z": [0.5]}) == close([0.2, 0.4])
    assert risk.portfolio_returns({"a": 1.0}, {"z": [0.5]}) == []
    assert risk.portfolio_returns({"a": 1.0}, {}) == []


def test_portfolio_returns_weight_without_series_adds_nothing() -> None:
    assert risk.portfolio_returns({"a": 0.5, "b": 0.5}, {"a": [0.1, -0.3]}) == close([0.05, -0.15])


def test_portfolio_returns_single_series_is_the_portfolio() -> None:
    own = [0.01, -0.02, 0.03]
    result = risk.portfolio_returns({"a": 0.25}, own)
    assert result == own
    assert result is not own


@given(weights_maps, st.dictionaries(ids, series, max_size=5))
def test_portfolio_returns_matches_reference(
    weights: dict[str, float], returns: dict[str, list[float]]
) -> None:
    assert risk.portfolio_returns(weights, returns) == close(ref_portfolio_returns(weights, returns))


# --- realized_volatility ------------------------------------------------------------------------


def test_realized_volatility_by_hand() -> None:
    assert risk.realized_volatility([0.01, 0.03]) == close(math.sqrt(2e-4))
    assert risk.realized_volatility([1.0, 2.0, 3.0, 4.0]) == close(math.sqrt(5.0 / 3.0))
    assert risk.realized_volatility([0.02, 0.02, 0.02]) == close(0.0)


def test_realized_volatility_needs_two_points() -> None:
    assert risk.realized_volatility([]) is None
    assert risk.realized_volatility([0.05]) is None


@given(series)
def test_realized_volatility_matches_statistics_stdev(values: list[float]) -> None:
    result = risk.realized_volatility(values)
    if len(values) < 2:
        assert result is None
    else:
        assert result == close(statistics.stdev(values))


# --- max_drawdown -------------------------------------------------------------------------------


def test_max_drawdown_by_hand() -> None:
    assert risk.max_drawdown([]) == 0.0
    assert risk.max_drawdown([0.1, 0.2]) == 0.0
    assert risk.max_drawdown([-0.1]) == close(0.1)  # measured from the starting level 1.0
    assert risk.max_drawdown([0.1, -0.5, 0.2]) == close(0.5)
    # levels 1.5, 1.2, 1.8, 0.9: the second, deeper fall from the later peak wins
    assert risk.max_drawdown([0.5, -0.2, 0.5, -0.5]) == close(0.5)
    assert risk.max_drawdown([0.5, -0.2, 0.5, -0.1]) == close(0.2)


@given(series)
def test_max_drawdown_matches_reference(values: list[float]) -> None:
    assert risk.max_drawdown(values) == close(ref_max_drawdown(values))


# --- covariance_variance ------------------------------------------------------------------------

WEIGHTS_AB = {"a": 0.6, "b": 0.4}
VARIANCE_AB = 0.36 * 0.04 + 0.16 * 0.09 + 2 * 0.6 * 0.4 * 0.01  # 0.0336


def test_keyed_pair_given_one_way_stands_for_both() -> None:
    covariance = {"a,a": 0.04, "b,b": 0.09, "a,b": 0.01}
    assert risk.covariance_variance(WEIGHTS_AB, covariance) == close(VARIANCE_AB)
    assert risk.covariance_variance(WEIGHTS_AB, {"b,a": 0.01, "b,b": 0.09, "a,a": 0.04}) == close(VARIANCE_AB)


def test_keyed_pair_given_both_ways_counts_once_each() -> None:
    covariance = {"a,a": 0.04, "a,b": 0.01, "b,a": 0.01, "b,b": 0.09}
    assert risk.covariance_variance(WEIGHTS_AB, covariance) == close(VARIANCE_AB)


def test_keyed_ids_missing_from_weights_count_as_zero() -> None:
    covariance = {"a,a": 0.04, "b,b": 0.09, "a,b": 0.01, "a,z": 0.5, "z,z": 1.0}
    assert risk.covariance_variance(WEIGHTS_AB, covariance) == close(VARIANCE_AB)
    assert risk.covariance_variance({"c": 1.0}, covariance) == 0.0


def test_keyed_same_keys_new_values_and_weights() -> None:
    # The per-key-set plan is cached: a second snapshot with the same keys must use its own numbers.
    first = {"a,a": 0.04, "b,b": 0.09, "a,b": 0.01}
    second = {"a,a": 1.0, "b,b": 2.0, "a,b": 0.5}
    assert risk.covariance_variance(WEIGHTS_AB, first) == close(VARIANCE_AB)
    assert risk.covariance_variance({"a": 1.0, "b": 1.0}, second) == close(1.0 + 2.0 + 2 * 0.5)
    assert risk.covariance_variance({"a": 0.0, "b": 3.0}, first) == close(9 * 0.09)


def test_dense_form() -> None:
    covariance = {"ids": ["a", "b"], "matrix": [[0.04, 0.01], [0.01, 0.09]]}
    assert risk.covariance_variance(WEIGHTS_AB, covariance) == close(VARIANCE_AB)
    missing = {"ids": ["a", "z"], "matrix": [[0.04, 0.5], [0.5, 1.0]]}
    assert risk.covariance_variance(WEIGHTS_AB, missing) == close(0.36 * 0.04)


@st.composite
def keyed_covariances(draw: st.DrawFn) -> dict[str, float]:
    """Pairs of ``IDS`` and of an id never in weights ("z"), each given as "a,b", "b,a" or both."""
    names = st.sampled_from([*IDS, "z"])
    pairs = draw(st.lists(st.tuples(names, names).map(sorted), unique_by=tuple))
    values = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
    covariance: dict[str, float] = {}
    for a, b in pairs:
        for key in draw(st.sampled_from([[f"{a},{b}"], [f"{b},{a}"], [f"{a},{b}", f"{b},{a}"]])):
            covariance[key] = draw(values)
    return covariance


@given(weights_maps, keyed_covariances())
def test_keyed_variance_matches_reference(weights: dict[str, float], covariance: dict[str, float]) -> None:
    assert risk.covariance_variance(weights, covariance) == close(ref_keyed_variance(weights, covariance))


@st.composite
def dense_covariances(draw: st.DrawFn) -> tuple[list[str], list[list[float]]]:
    names = draw(st.lists(st.sampled_from([*IDS, "z"]), min_size=1, unique=True))
    values = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
    n = len(names)
    return names, [[draw(values) for _ in range(n)] for _ in range(n)]


@given(weights_maps, dense_covariances())
def test_dense_variance_matches_reference(
    weights: dict[str, float], dense: tuple[list[str], list[list[float]]]
) -> None:
    names, matrix = dense
    expected = ref_dense_variance(weights, names, matrix)
    assert risk.covariance_variance(weights, {"ids": names, "matrix": matrix}) == close(expected)


@given(weights_maps, dense_covariances())
def test_keyed_upper_triangle_equals_dense_symmetric(
    weights: dict[str, float], dense: tuple[list[str], list[list[float]]]
) -> None:
    names, matrix = dense
    n = len(names)
    symmetric = [[matrix[min(i, j)][max(i, j)] for j in range(n)] for i in range(n)]
    upper = {f"{names[i]},{names[j]}": matrix[i][j] for i in range(n) for j in range(i, n)}
    dense_variance = risk.covariance_variance(weights, {"ids": names, "matrix": symmetric})
    assert risk.covariance_variance(weights, upper) == close(dense_variance)


# --- worst_stress -------------------------------------------------------------------------------


def test_worst_stress_by_hand() -> None:
    stress = {"crash": {"max_drawdown": 0.25}, "slowdown": {"max_drawdown": 0.12}}
    assert risk.worst_stress(stress) == {"scenario": "crash", "value": 0.25}
    # max_drawdown is preferred; without it the largest metric stands in
    assert risk.worst_stress({"x": {"max_drawdown": 0.1, "var": 0.9}, "y": {"var": 0.3, "es": 0.4}}) == {
        "scenario": "y",
        "value": 0.4,
    }
    assert risk.worst_stress({}) == {"scenario": None, "value": None}
    assert risk.worst_stress({"empty": {}}) == {"scenario": None, "value": None}
    assert risk.worst_stress({"first": {"m": 0.2}, "tie": {"m": 0.2}})["scenario"] == "first"


# --- limit_breaches -----------------------------------------------------------------------------


def test_limit_breaches_by_hand() -> None:
    weights = {"a": 0.5, "b": -0.3, "c": 0.2}
    assert risk.limit_breaches(weights, {"max_weight": 0.25, "max_gross": 0.9}) == [
        {"limit": "max_weight", "id": "a", "value": 0.5, "bound": 0.25},
        {"limit": "max_weight", "id": "b", "value": -0.3, "bound": 0.25},
        {"limit": "max_gross", "value": close(1.0), "bound": 0.9},
    ]
    assert risk.limit_breaches(weights, {"max_weight": 0.5, "max_gross": 1}) == []
    assert risk.limit_breaches(weights, {}) == []
    assert risk.limit_breaches(weights, {"max_weight": "0.1", "max_gross": None}) == []


@given(weights_maps, weight_values.map(abs), weight_values.map(lambda x: 3 * abs(x)))
def test_limit_breaches_matches_reference(
    weights: dict[str, float], max_weight: float, max_gross: float
) -> None:
    gross = math.fsum(abs(w) for w in weights.values())
    expected: list[dict[str, Any]] = [
        {"limit": "max_weight", "id": k, "value": w, "bound": max_weight}
        for k, w in weights.items()
        if abs(w) > max_weight
    ]
    if gross > max_gross:
        expected.append({"limit": "max_gross", "value": gross, "bound": max_gross})
    assert risk.limit_breaches(weights, {"max_weight": max_weight, "max_gross": max_gross}) == expected


def test_metrics_beyond_float_range_are_none_never_an_error() -> None:
    """Each weight is finite, as the contract asks, but their sums and products need not be."""
    weights = {"x": 1e308, "y": 1e308, "z": -2e308 + 1e308}
    assert risk.gross_exposure(weights) is None  # fsum raises OverflowError here
    assert risk.exposure(weights)["gross"] is None
    assert risk.in_float_range(risk.covariance_variance, {"x": 1e308}, {"x,x": 2.0}) is None
    assert risk.in_float_range(risk.realized_volatility, [1e308, -1e308]) is None
    assert risk.limit_breaches(weights, {"max_gross": 10}) == [
        {"limit": "max_gross", "value": None, "bound": 10}
    ]
    assert risk.in_float_range(risk.realized_volatility, [0.01, 0.03]) == pytest.approx(0.0141421356)
