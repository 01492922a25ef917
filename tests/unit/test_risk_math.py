"""Exposure (the extended validation worker's figures): by hand, and against plain references.

The risk figures (sigma, VaR, ES, history, stress) are tested in test_risk_analytics.py.
"""

from __future__ import annotations

import math
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


def test_exposure_beyond_float_range_is_none_never_an_error() -> None:
    """Each weight is finite, as the contract asks, but their sums need not be."""
    weights = {"x": 1e308, "y": 1e308, "z": -2e308 + 1e308}
    assert risk.gross_exposure(weights) is None  # fsum raises OverflowError here
    assert risk.exposure(weights)["gross"] is None
    assert risk.in_float_range(math.fsum, [0.01, 0.03]) == pytest.approx(0.04)
