"""The contract's rules for the numbers of a snapshot: weights, covariance, realized returns, stress.

Every value is a finite JSON number (never a boolean or a string; no NaN or Infinity). The common
case, lists of finite floats, is checked at C speed; only when a fast check says no do the exact
checks run, and they name the offending field.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from riskhub.config import MAX_TEXT_CHARS
from riskhub.errors import ContractError

MAX_SERIES_POINTS = 200_000
MAX_TOTAL_POINTS = 1_000_000
WEIGHT_SUM_TOLERANCE = 1e-3
COVARIANCE_SEPARATOR = ","
SHOCKS = "shocks"  # a stress scenario's per-id returns
SHAPE_CACHE_MAX_KEYS = 5_000  # a keyed covariance of ~70 ids; larger ones are split each time

_NUMBER_TYPES = frozenset({int, float})
_FLOAT_MAX = sys.float_info.max


def _is_number(value: Any) -> bool:
    """A JSON number a float can hold: finite float, or an integer within float range."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    return kind is int and -_FLOAT_MAX <= value <= _FLOAT_MAX


def _are_finite_floats(values: list[Any]) -> bool:
    """True if every value is a float and finite, at C speed: the common case. A sum of floats
    is finite only if every term is, but a sum of finite floats can overflow: False may be
    wrong, so it only ever chooses the slower exact check, never a rejection."""
    return list(map(type, values)).count(float) == len(values) and math.isfinite(sum(values))


def _all_numbers(values: Iterable[Any]) -> bool:
    """``_is_number`` for every value, at C speed for the common case."""
    values = list(values)
    if _are_finite_floats(values):
        return True
    try:
        return set(map(type, values)) <= _NUMBER_TYPES and all(map(math.isfinite, values))
    except OverflowError:  # an integer beyond float range
        return False


def _require_number(value: Any, where: str) -> None:
    if not _is_number(value):
        raise ContractError(f"{where}: must be a finite number, got {describe(value)}", field=where)


def describe(value: Any) -> str:
    """How a value is named in an error message ("a string", "a boolean", the float itself)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return repr(value)
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), repr(value))


def check_weights(body: dict[str, Any]) -> None:
    """``weights``: a non-empty object of id -> finite number, summing to 1 (within tolerance)."""
    weights = body.get("weights")
    if weights is None:
        raise ContractError("weights: required", field="weights")
    if not isinstance(weights, dict) or not weights:
        raise ContractError("weights: must be a non-empty object of id -> number", field="weights")
    if not (all(weights) and _are_finite_floats(list(weights.values()))):
        _name_bad_weight(weights)
    check_ids(weights, "weights")
    try:
        total = math.fsum(weights.values())
    except OverflowError:  # finite weights whose sum is beyond float range
        raise ContractError("weights: must sum to 1, got a sum beyond float range", field="weights") from None
    if total <= 0:
        raise ContractError(f"weights: sum must be > 0, got {total!r}", field="weights")
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ContractError(
            f"weights: must sum to 1 within {WEIGHT_SUM_TOLERANCE}, got {total!r}", field="weights"
        )


def check_ids(mapping: dict[str, Any], where: str, limit: int = MAX_TEXT_CHARS) -> None:
    """Every key of ``mapping`` (an id, a scenario name) at most ``limit`` characters."""
    if mapping and max(map(len, mapping)) > limit:
        key = next(k for k in mapping if len(k) > limit)
        raise ContractError(f"{where}: ids must be at most {limit} characters ({key[:40]!r}...)", field=where)


def _name_bad_weight(weights: dict[str, Any]) -> None:
    for key, value in weights.items():
        if not key:
            raise ContractError("weights: ids must be non-empty strings", field="weights")
        _require_number(value, f"weights.{key}")


def check_covariance(body: dict[str, Any]) -> None:
    """``covariance``, if present: the keyed ``{"a,b": v}`` or the dense ``{"ids", "matrix"}`` form."""
    cov = body.get("covariance")
    if cov is None:
        return
    if not isinstance(cov, dict):
        raise ContractError(
            'covariance: must be {"a,b": number} or {"ids": [...], "matrix": [[...]]}',
            field="covariance",
        )
    weights = body["weights"]
    if "ids" in cov or "matrix" in cov:
        _check_dense_covariance(cov, weights)
    else:
        _check_keyed_covariance(cov, weights)


def _check_keyed_covariance(cov: dict[str, Any], weights: dict[str, Any]) -> None:
    shape = _keyed_covariance_shape(frozenset(cov), frozenset(weights))
    if shape is None or not _all_numbers(cov.values()):
        _name_bad_covariance_entry(cov, weights)
        return
    if shape.forward(cov) == shape.backward(cov):  # a matrix written out: exactly symmetric
        return
    for low_high, high_low in shape.pairs:  # pairs given both ways must agree
        forward, backward = cov[low_high], cov[high_low]
        if not math.isclose(forward, backward):
            where = f"covariance.{low_high}"  # named in sorted order, whichever came first
            raise ContractError(
                f"{where}: differs from its symmetric pair ({forward!r} vs {backward!r})", field=where
            )


@dataclass(frozen=True)
class CovarianceShape:
    """The keys of a keyed covariance given both ways, as ("low,high", "high,low") pairs, and
    getters of their values in pair order (``operator.itemgetter``: one C call for all of them)."""

    pairs: tuple[tuple[str, str], ...]
    forward: Callable[[dict[str, Any]], Any]
    backward: Callable[[dict[str, Any]], Any]


def _keyed_covariance_shape(keys: frozenset[str], ids: frozenset[str]) -> CovarianceShape | None:
    """None if a key is not two ids of ``ids``; else the keys given both ways. Producers send the
    same universe again and again, and splitting every key was the largest single cost of a
    write (measured): small key sets are cached. A cached entry holds its key set, so large ones
    are not, and few are kept: a burst of huge covariances (even refused ones) must not pin
    their memory for good."""
    if len(keys) > SHAPE_CACHE_MAX_KEYS:
        return _covariance_shape(keys, ids)
    return _cached_covariance_shape(keys, ids)


@lru_cache(maxsize=16)
def _cached_covariance_shape(keys: frozenset[str], ids: frozenset[str]) -> CovarianceShape | None:
    return _covariance_shape(keys, ids)


def _covariance_shape(keys: frozenset[str], ids: frozenset[str]) -> CovarianceShape | None:
    pairs = [key.split(COVARIANCE_SEPARATOR) for key in keys]
    if {*map(len, pairs)} != {2} or not set(chain.from_iterable(pairs)) <= ids:
        return None
    both_ways = tuple(
        (f"{a},{b}", f"{b},{a}") for a, b in sorted(map(tuple, pairs)) if a < b and f"{b},{a}" in keys
    )
    return CovarianceShape(
        both_ways, _values_of([p[0] for p in both_ways]), _values_of([p[1] for p in both_ways])
    )


def _values_of(keys: list[str]) -> Callable[[dict[str, Any]], Any]:
    """A getter of the values of ``keys`` as a tuple (also for zero or one key)."""
    if len(keys) < 2:
        return lambda mapping: tuple(mapping[key] for key in keys)
    return itemgetter(*keys)


def _name_bad_covariance_entry(cov: dict[str, Any], weights: dict[str, Any]) -> None:
    for key, value in cov.items():
        where = f"covariance.{key}"
        pair = key.split(COVARIANCE_SEPARATOR)
        if len(pair) != 2:
            raise ContractError(
                f"{where}: key must be two ids joined by {COVARIANCE_SEPARATOR!r} (an id may not contain it)",
                field=where,
            )
        for asset in pair:
            if asset not in weights:
                raise ContractError(f"{where}: id {asset!r} is not in weights", field=where)
        _require_number(value, where)


def _check_dense_covariance(cov: dict[str, Any], weights: dict[str, Any]) -> None:
    if set(cov) != {"ids", "matrix"}:
        raise ContractError('covariance: dense form has exactly "ids" and "matrix"', field="covariance")
    ids, matrix = cov["ids"], cov["matrix"]
    _check_dense_ids(ids, weights)
    size = len(ids)
    if not isinstance(matrix, list) or len(matrix) != size:
        raise ContractError(f"covariance.matrix: must be {size}x{size}", field="covariance.matrix")
    for i, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != size:
            raise ContractError(f"covariance.matrix: must be {size}x{size}", field="covariance.matrix")
        for j, value in enumerate(row):
            _require_number(value, f"covariance.matrix[{i}][{j}]")
    for i in range(size):
        for j in range(i):
            if not math.isclose(matrix[i][j], matrix[j][i]):
                where = f"covariance.matrix[{i}][{j}]"
                raise ContractError(f"{where}: matrix must be symmetric", field=where)


def _check_dense_ids(ids: Any, weights: dict[str, Any]) -> None:
    if not isinstance(ids, list) or not ids:
        raise ContractError("covariance.ids: must be a non-empty list of ids", field="covariance.ids")
    for asset in ids:
        if not isinstance(asset, str) or asset not in weights:
            raise ContractError(f"covariance.ids: id {asset!r} is not in weights", field="covariance.ids")
    if len(set(ids)) != len(ids):
        raise ContractError("covariance.ids: ids must be distinct", field="covariance.ids")


def normalize_realized_returns(body: dict[str, Any]) -> None:
    """``realized_returns``, if present: one series or id -> series, within the point limits."""
    returns = body.get("realized_returns")
    if returns is None:
        return
    if isinstance(returns, list):
        body["realized_returns"] = _float_series(returns, "realized_returns")
        return
    if not isinstance(returns, dict) or not returns:
        raise ContractError(
            "realized_returns: must be a series or a non-empty object of id -> series",
            field="realized_returns",
        )
    check_ids(returns, "realized_returns")
    if _are_float_series(list(returns.values())):
        body["realized_returns"] = dict(returns)
        return
    total = sum(len(series) if isinstance(series, list) else 0 for series in returns.values())
    if total > MAX_TOTAL_POINTS:
        raise ContractError(
            f"realized_returns: at most {MAX_TOTAL_POINTS} points in total, got {total}",
            field="realized_returns",
        )
    body["realized_returns"] = {
        key: _float_series(series, f"realized_returns.{key}") for key, series in returns.items()
    }


def _are_float_series(all_series: list[Any]) -> bool:
    """The common case, at C speed: non-empty lists of finite floats within the point limits,
    kept as they are. False sends the caller to the checks that name what is wrong."""
    if set(map(type, all_series)) != {list} or not all(all_series):
        return False
    if max(map(len, all_series)) > MAX_SERIES_POINTS or sum(map(len, all_series)) > MAX_TOTAL_POINTS:
        return False
    return _are_finite_floats(list(chain.from_iterable(all_series)))


def _float_series(series: Any, where: str) -> list[float]:
    if not isinstance(series, list) or not series:
        raise ContractError(f"{where}: must be a non-empty array of numbers", field=where)
    if len(series) > MAX_SERIES_POINTS:
        raise ContractError(
            f"{where}: at most {MAX_SERIES_POINTS} points per series, got {len(series)}", field=where
        )
    if _are_finite_floats(series):
        return series
    if not _all_numbers(series):
        for index, value in enumerate(series):
            _require_number(value, f"{where}[{index}]")
    return [float(value) for value in series]


def check_stress(body: dict[str, Any]) -> None:
    """``stress``, if present: scenario -> metric -> finite number; a scenario's ``shocks`` is
    id -> finite number (the id's return in that scenario), every id one of ``weights``."""
    stress = body.get("stress")
    if stress is None:
        return
    if not isinstance(stress, dict):
        raise ContractError("stress: must be an object of scenario -> metrics", field="stress")
    check_ids(stress, "stress")
    for scenario, metrics in stress.items():
        where = f"stress.{scenario}"
        if not isinstance(metrics, dict):
            raise ContractError(f"{where}: must be an object of metric -> number", field=where)
        for name, value in metrics.items():
            if name == SHOCKS:
                _check_shocks(value, body["weights"], f"{where}.{SHOCKS}")
            else:
                _require_number(value, f"{where}.{name}")


def _check_shocks(shocks: Any, weights: dict[str, Any], where: str) -> None:
    if not isinstance(shocks, dict):
        raise ContractError(f"{where}: must be an object of id -> return", field=where)
    for asset, value in shocks.items():
        if asset not in weights:
            raise ContractError(f"{where}.{asset}: must be an id of weights", field=f"{where}.{asset}")
        _require_number(value, f"{where}.{asset}")
