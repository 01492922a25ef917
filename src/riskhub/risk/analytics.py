"""Portfolio risk of one snapshot: sigma, VaR/ES, contributions, history, stress (pure numpy, no I/O).

Everything is per period (returns, covariance and stress come per period) unless the name says
annual; losses are positive fractions of portfolio value. On a valid snapshot nothing here raises
or warns: a figure that cannot be had is None, and a finding says why.

Cost: the consumer runs this on every snapshot, so the covariance is checked with exactly one
``eigvalsh`` and everything else is O(n^2) at most, on arrays built once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from riskhub.config import PERIODS_PER_YEAR
from riskhub.risk import history
from riskhub.risk.history import historical_var_es as historical_var_es
from riskhub.risk.history import ledoit_wolf as ledoit_wolf
from riskhub.risk.history import max_drawdown as max_drawdown
from riskhub.risk.stress import stress_table as stress_table

Array = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]
Severity = Literal["info", "warn", "error"]
Returns = Mapping[str, Sequence[float]] | Sequence[float]

CONFIDENCE_LEVELS = history.CONFIDENCE_LEVELS
COVARIANCE_SEPARATOR = ","
PSD_TOLERANCE = 1e-10  # relative to max(1, largest |eigenvalue|)
CORRELATION_TOLERANCE = 1e-12  # a rounding hair past 1 is not a finding
_SUFFIX = history.SUFFIX
_NORMAL = NormalDist()
_Z = {a: _NORMAL.inv_cdf(a) for a in CONFIDENCE_LEVELS}
_ES_FACTOR = {a: _NORMAL.pdf(_Z[a]) / (1.0 - a) for a in CONFIDENCE_LEVELS}

_PARAMETRIC = tuple(f"{kind}_{_SUFFIX[a]}" for kind in ("var", "es") for a in CONFIDENCE_LEVELS)
_REALIZED = ("realized_sigma", "realized_sigma_annual", "max_drawdown")
_EXPOSURE = ("gross", "net", "max_weight", "positions")
FIGURE_NAMES: tuple[str, ...] = (
    *("sigma", "sigma_annual", *_PARAMETRIC, *(f"hist_{name}" for name in _PARAMETRIC)),
    *(*_REALIZED, *_EXPOSURE, "worst_stress_loss"),
)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the report could not take at face value."""

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The risk of one snapshot; ``figures`` always has every name of FIGURE_NAMES."""

    method: str  # "covariance" | "ledoit_wolf" | "fallback_corr1" | "none"
    figures: dict[str, float | None]
    contributions: list[dict[str, float | str | None]]
    stress: list[dict[str, Any]]
    worst_stress: str | None
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict of the report."""
        return {
            "method": self.method,
            "figures": dict(self.figures),
            "contributions": [dict(row) for row in self.contributions],
            "stress": [{**row, "metrics": dict(row["metrics"])} for row in self.stress],
            "worst_stress": self.worst_stress,
            "findings": [
                {"code": f.code, "severity": f.severity, "message": f.message} for f in self.findings
            ],
        }


@dataclass(frozen=True, slots=True)
class CovarianceCheck:
    """Whether a covariance is PSD, its smallest eigenvalue, and what looked wrong."""

    psd: bool
    min_eigenvalue: float | None
    findings: list[Finding]


@dataclass(frozen=True, slots=True)
class _History:
    portfolio: Array | None  # r_t
    aligned: Array | None  # n x T over every weight id, cut to the last common points
    series: list[Sequence[float]] | None  # every weight id's own series, uncut


@dataclass(frozen=True, slots=True)
class _Model:
    method: str
    sigma: float | None
    marginal: Array | None  # d sigma / d w_i


# --------------------------------------------------------------------------- covariance


def covariance_matrix(ids: Sequence[str], covariance: Mapping[str, Any]) -> tuple[Array, list[str]]:
    """The covariance over ``ids`` (NaN where not given) and the ids it does not cover."""
    if "ids" in covariance and "matrix" in covariance:
        return _dense_matrix(ids, list(covariance["ids"]), covariance["matrix"])
    return _keyed_matrix(ids, covariance)


def _dense_matrix(ids: Sequence[str], given: list[str], matrix: Any) -> tuple[Array, list[str]]:
    full: Array = np.asarray(matrix, dtype=np.float64)
    if given == list(ids):
        return full, []
    position = {key: index for index, key in enumerate(given)}
    missing = [key for key in ids if key not in position]
    held = np.fromiter((i for i, key in enumerate(ids) if key in position), np.intp)
    source = np.fromiter((position[ids[i]] for i in held.tolist()), np.intp, len(held))
    if not missing:
        return full[np.ix_(source, source)], []
    out = np.full((len(ids), len(ids)), np.nan)
    out[np.ix_(held, held)] = full[np.ix_(source, source)]
    return out, missing


def _keyed_matrix(ids: Sequence[str], covariance: Mapping[str, Any]) -> tuple[Array, list[str]]:
    keys = tuple(covariance)
    if len(keys) > KEY_POSITIONS_CACHED_UP_TO:
        rows, cols = _key_positions(tuple(ids), keys)
    else:
        rows, cols = _cached_key_positions(tuple(ids), keys)
    values = np.fromiter(covariance.values(), np.float64, len(keys))
    known = (rows >= 0) & (cols >= 0)
    rows, cols, values = rows[known], cols[known], values[known]
    out = np.full((len(ids), len(ids)), np.nan)
    out[cols, rows] = values  # the mirror first: a pair given both ways keeps each way's own value
    out[rows, cols] = values
    missing = [ids[i] for i in np.flatnonzero(np.isnan(np.diagonal(out))).tolist()]
    return out, missing


def _key_positions(ids: tuple[str, ...], keys: tuple[str, ...]) -> tuple[Indices, Indices]:
    """Row and column of each ``"a,b"`` key over ``ids`` (-1: an id not among them)."""
    position = {key: index for index, key in enumerate(ids)}
    halves = [key.partition(COVARIANCE_SEPARATOR) for key in keys]
    rows = np.fromiter([position.get(h[0], -1) for h in halves], np.intp, len(halves))
    cols = np.fromiter([position.get(h[2], -1) for h in halves], np.intp, len(halves))
    rows.flags.writeable = cols.flags.writeable = False  # shared by every hit of the cache below
    return rows, cols


# A producer sends the same keys with every snapshot: splitting 400 keys was half of the risk
# worker's time on a 20-id snapshot. Few, small key sets are kept (as the contract's shape cache).
_cached_key_positions = lru_cache(maxsize=16)(_key_positions)
KEY_POSITIONS_CACHED_UP_TO = 5_000


def check_covariance(matrix: Array, ids: Sequence[str]) -> CovarianceCheck:
    """Variances, implied correlations and PSD-ness (one eigvalsh) of a fully known covariance."""
    findings: list[Finding] = []
    diagonal = np.diagonal(matrix)
    bad = np.flatnonzero(diagonal <= 0)
    if bad.size:
        names = _names([ids[i] for i in bad.tolist()])
        findings.append(Finding("nonpositive_variance", "warn", f"variance <= 0 for {names}"))
    findings += _correlation_findings(matrix, diagonal, ids)
    if matrix.size == 0:
        return CovarianceCheck(True, None, findings)
    try:
        eigenvalues = np.linalg.eigvalsh(matrix)
        smallest = float(eigenvalues[0])
        largest = max(-smallest, float(eigenvalues[-1]))  # ascending: the largest |eigenvalue| is at an end
    except np.linalg.LinAlgError:  # no convergence: no usable spectrum
        smallest = largest = math.nan
    psd = smallest >= -PSD_TOLERANCE * max(1.0, largest)  # False for NaN
    if not psd:
        message = f"covariance is not positive semi-definite: smallest eigenvalue {smallest:.6g}"
        findings.append(Finding("covariance_not_psd", "warn", message))
    return CovarianceCheck(psd, smallest if math.isfinite(smallest) else None, findings)


def _correlation_findings(matrix: Array, diagonal: Array, ids: Sequence[str]) -> list[Finding]:
    scale = np.sqrt(np.maximum(diagonal, 0.0))
    bound = np.multiply.outer(scale, scale)
    bound *= 1.0 + CORRELATION_TOLERANCE
    outside = np.abs(matrix) > bound
    np.fill_diagonal(outside, False)  # a variance is not a correlation (checked above)
    count = int(np.count_nonzero(outside))
    if not count:
        return []
    i, j = divmod(int(np.argmax(outside)), len(ids))
    example = f"{ids[i]},{ids[j]}: {matrix[i, j] / (scale[i] * scale[j]):.6g}"
    message = f"{count} implied correlations outside [-1, 1], e.g. {example}"
    return [Finding("correlation_out_of_range", "warn", message)]


def _usable_covariance(
    ids: list[str], covariance: Mapping[str, Any], findings: list[Finding]
) -> Array | None:
    matrix, missing = covariance_matrix(ids, covariance)
    held = ids
    if missing:
        message = f"covariance does not cover {len(missing)} of {len(ids)} ids: {_names(missing)}"
        findings.append(Finding("covariance_incomplete", "warn", message))
        index = np.flatnonzero(~np.isnan(np.diagonal(matrix)))
        matrix, held = matrix[np.ix_(index, index)], [ids[i] for i in index.tolist()]
    unknown = np.isnan(matrix)
    if unknown.any():  # keyed form: pairs given neither way
        pairs = int(np.count_nonzero(unknown)) // 2
        findings.append(Finding("covariance_pairs_missing", "warn", f"{pairs} pairs not given, taken as 0"))
        matrix = np.where(unknown, 0.0, matrix)
    check = check_covariance(matrix, held)
    findings += check.findings
    return matrix if check.psd and not missing else None


# --------------------------------------------------------------------------- risk model


def portfolio_sigma(matrix: Array, weights: Array) -> float:
    """sqrt(w' S w); a rounding-negative variance counts as 0, past float range gives inf or NaN."""
    return _sigma(weights, matrix @ weights)


def _sigma(weights: Array, matrix_weights: Array) -> float:
    return float(np.sqrt(np.maximum(weights @ matrix_weights, 0.0)))


def _covariance_model(method: str, matrix: Array, weights: Array) -> _Model:
    matrix_weights = matrix @ weights
    sigma = _sigma(weights, matrix_weights)
    usable = math.isfinite(sigma) and sigma > 0
    return _Model(method, sigma, matrix_weights / sigma if usable else None)


def _risk_model(
    ids: list[str],
    weights: Array,
    covariance: Mapping[str, Any] | None,
    past: _History,
    findings: list[Finding],
) -> _Model:
    if covariance is None:
        findings.append(Finding("covariance_missing", "info", "no covariance: conservative fallback"))
    else:
        matrix = _usable_covariance(ids, covariance, findings)
        if matrix is not None:
            return _covariance_model("covariance", matrix, weights)
    if past.aligned is not None and past.aligned.shape[1] >= 2 * len(ids):
        return _covariance_model("ledoit_wolf", ledoit_wolf(past.aligned.T), weights)
    if past.series is not None and past.aligned is not None and min(map(len, past.series)) >= 2:
        sigmas = _series_sigmas(past.series, past.aligned)
        # correlation 1 between all ids: an upper bound on sigma
        return _Model("fallback_corr1", float(np.abs(weights) @ sigmas), np.sign(weights) * sigmas)
    message = "no usable covariance and too little realized history for a fallback"
    findings.append(Finding("no_risk_model", "warn", message))
    return _Model("none", None, None)


def _series_sigmas(series: list[Sequence[float]], aligned: Array) -> Array:
    if all(len(s) == aligned.shape[1] for s in series):
        sigmas: Array = history.sample_std(aligned)
        return sigmas
    return np.array([history.sample_std(np.asarray(s, dtype=np.float64)) for s in series])


def contributions(
    ids: Sequence[str], weights: Array, marginal: Array | None, sigma: float | None
) -> list[dict[str, float | str | None]]:
    """Per id: weight, marginal, component = w_i x marginal (sums to sigma), percent; None if not finite."""
    if marginal is None or sigma is None:
        none = [None] * len(ids)
        return _contribution_rows(ids, weights.tolist(), none, none, none)
    component = weights * marginal
    percent = component / sigma
    columns: list[Any] = [marginal, component, percent]
    if not (np.isfinite(marginal).all() and np.isfinite(percent).all()):
        columns = [np.where(np.isfinite(column), column, None) for column in columns]
    return _contribution_rows(ids, weights.tolist(), *(column.tolist() for column in columns))


def _contribution_rows(ids: Sequence[str], *columns: list[Any]) -> list[dict[str, float | str | None]]:
    return [
        {"id": key, "weight": weight, "marginal": marginal, "component": component, "percent": percent}
        for key, weight, marginal, component, percent in zip(ids, *columns, strict=True)
    ]


def parametric_var_es(sigma: float | None) -> dict[str, float | None]:
    """Zero-mean Gaussian VaR_a = z_a sigma and ES_a = sigma phi(z_a) / (1 - a), per period."""
    figures: dict[str, float | None] = {}
    for a in CONFIDENCE_LEVELS:
        figures[f"var_{_SUFFIX[a]}"] = None if sigma is None else _Z[a] * sigma
        figures[f"es_{_SUFFIX[a]}"] = None if sigma is None else _ES_FACTOR[a] * sigma
    return figures


# --------------------------------------------------------------------------- history


def _history(ids: list[str], weights: Array, returns: Returns | None, findings: list[Finding]) -> _History:
    if returns is None:
        return _History(None, None, None)
    if not isinstance(returns, Mapping):
        return _History(np.asarray(returns, dtype=np.float64), None, None)
    held = [i for i, key in enumerate(ids) if key in returns]
    if len(held) < len(ids):
        missing = [key for key in ids if key not in returns]
        message = f"no realized returns for {len(missing)} of {len(ids)} ids: {_names(missing)}"
        findings.append(Finding("returns_incomplete", "warn", message))
    if not held:
        return _History(None, None, None)
    series = [returns[ids[i]] for i in held]
    length = min(map(len, series))
    if any(len(s) != length for s in series):
        message = f"series lengths differ; aligned on their last {length} points"
        findings.append(Finding("unequal_history", "info", message))
        aligned = np.array([s[len(s) - length :] for s in series], dtype=np.float64)
    else:
        aligned = np.array(series, dtype=np.float64)
    complete = len(held) == len(ids)
    portfolio = (weights if complete else weights[held]) @ aligned
    return _History(portfolio, aligned if complete else None, series if complete else None)


def _history_figures(series: Array | None, annual: float, findings: list[Finding]) -> dict[str, float | None]:
    if series is None:
        return {}
    figures = historical_var_es(series)
    short = [
        f"{a * 100:g}% (needs {history.MIN_POINTS[a]})"
        for a in CONFIDENCE_LEVELS
        if series.size < history.MIN_POINTS[a]
    ]
    if short:
        message = f"{series.size} points: no historical VaR/ES at {', '.join(short)}"
        findings.append(Finding("insufficient_history", "info", message))
    sigma = float(history.sample_std(series)) if series.size >= 2 else None
    figures["realized_sigma"] = sigma
    figures["realized_sigma_annual"] = None if sigma is None else sigma * annual
    figures["max_drawdown"] = max_drawdown(series)
    return figures


# --------------------------------------------------------------------------- report


def exposure(weights: Array) -> dict[str, float | None]:
    """Gross (sum |w|), net (sum w), largest |w| and the number of positions."""
    absolute = np.abs(weights)
    return {
        "gross": float(absolute.sum()),
        "net": float(weights.sum()),
        "max_weight": float(absolute.max()) if weights.size else None,
        "positions": len(weights),
    }


def analyze(
    weights: Mapping[str, float],
    *,
    covariance: Mapping[str, Any] | None = None,
    realized_returns: Returns | None = None,
    stress: Mapping[str, Mapping[str, Any]] | None = None,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> RiskReport:
    """The risk report of one validated snapshot's parts; never raises or warns on one."""
    with np.errstate(all="ignore"):  # products of absurd valid weights (1e308) overflow
        return _analyze(weights, covariance, realized_returns, stress, periods_per_year)


def _analyze(
    weights: Mapping[str, float],
    covariance: Mapping[str, Any] | None,
    realized_returns: Returns | None,
    stress: Mapping[str, Mapping[str, Any]] | None,
    periods_per_year: int,
) -> RiskReport:
    ids = list(weights)
    w = np.fromiter(weights.values(), np.float64, len(ids))
    findings: list[Finding] = []
    past = _history(ids, w, realized_returns, findings)
    model = _risk_model(ids, w, covariance, past, findings)
    annual = math.sqrt(periods_per_year)
    figures: dict[str, float | None] = dict.fromkeys(FIGURE_NAMES)
    figures["sigma"] = model.sigma
    figures["sigma_annual"] = None if model.sigma is None else model.sigma * annual
    figures.update(parametric_var_es(model.sigma))
    figures.update(_history_figures(past.portfolio, annual, findings))
    figures.update(exposure(w))
    table = stress_table(weights, stress)
    figures["worst_stress_loss"] = table.worst_loss
    out_of_range = [name for name, value in figures.items() if value is not None and not math.isfinite(value)]
    figures.update(dict.fromkeys(out_of_range))
    if model.sigma == 0:
        findings.append(Finding("zero_sigma", "info", "portfolio sigma is 0: no contributions"))
    rows = contributions(ids, w, model.marginal, figures["sigma"] or None)
    if model.marginal is not None and figures["sigma"]:
        out_of_range += [f"contribution {row['id']}" for row in rows if row["percent"] is None]
    out_of_range += [f"stress {name}" for name in table.out_of_range]
    if table.unranked:
        message = f"no loss metric of known meaning, not ranked: {_names(table.unranked)}"
        findings.append(Finding("stress_unranked", "info", message))
    if out_of_range:
        message = f"past float range, reported as None: {_names(out_of_range)}"
        findings.append(Finding("out_of_float_range", "warn", message))
    return RiskReport(model.method, figures, rows, table.rows, table.worst, findings)


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
