"""The bodies the bench writes, shaped like what producers send (seeded, deterministic).

A producer that computes its risk with numpy sends full-precision floats (``repr`` of a float64:
up to 17 significant digits, and exponent form such as ``3.2e-05`` below 1e-4, which daily
variances and covariances often are) and the full symmetric covariance, not a rounded upper
triangle. Each body's ``version`` is ``__VERSION__`` (see ``common.body_with_version``).

* ``a``: 20 ids, the full 20x20 covariance keyed ``"a,b"`` (400 entries) from random factor
  loadings (B F B' + D, positive definite), weights and stress at full precision.
* ``b``: ``a`` plus 250 daily returns per id.
* ``c``: 200 ids, the covariance by ref (the producer offloaded it to the hub's blob store
  first; ``--body c`` writes it there through the hub once, before the runs).
* ``sample``: the bench's first body, a ~13.9 KB 20-strategy snapshot with short decimals and an
  upper-triangle covariance: an easy body, kept to compare with earlier runs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from common import VERSION_PLACEHOLDER, body_with_version

SEED = 20_240_601
FACTORS = 5
TRADING_DAYS = 250


@dataclass(frozen=True)
class Body:
    """A bench body: its name, what it is, and how many ids it holds."""

    name: str
    description: str
    ids: int
    returns: int = 0
    covariance_by_ref: bool = False


GOAL_BODY = "a"  # the body the goals are set on; the others show how cost grows


@dataclass(frozen=True)
class BenchBody:
    """A body ready for the runs: its JSON text (version placeholder in it) and its file for wrk."""

    name: str
    payload: str
    file: Path

    def bytes_for(self, version: str) -> bytes:
        """The body with ``version``."""
        return body_with_version(self.payload, version)


BODIES = {
    "a": Body("a", "20 ids, full symmetric covariance (400 entries), full precision", 20),
    "b": Body("b", "body a + 250 daily returns per id", 20, returns=TRADING_DAYS),
    "c": Body("c", "200 ids, covariance by ref", 200, covariance_by_ref=True),
    "sample": Body("sample", "the old sample: 210 short decimals, upper triangle", 20),
}


def now_iso() -> str:
    """``as_of`` now, so no snapshot expires during the run."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ids_of(count: int) -> list[str]:
    """``s000``.. ids."""
    return [f"s{i:03d}" for i in range(count)]


def factor_covariance(count: int, rng: np.random.Generator) -> np.ndarray:
    """A daily-scale positive-definite covariance: B F B' + D from random factor loadings."""
    loadings = rng.normal(0.0, 0.006, size=(count, FACTORS))
    factor_variances = rng.uniform(0.5, 1.5, size=FACTORS)
    specific = rng.uniform(2e-5, 2e-4, size=count)
    cov: np.ndarray = (loadings * factor_variances) @ loadings.T + np.diag(specific)
    return (cov + cov.T) / 2  # the product is symmetric only up to rounding; producers symmetrize


def producer_document(body: Body, seed: int = SEED) -> dict[str, Any]:
    """Body ``a``/``b``/``c`` as a producer's dict (``c`` without its ``covariance_ref``: it carries
    the covariance inline, for the one write that offloads it)."""
    rng = np.random.default_rng(seed + body.ids + body.returns)
    ids = ids_of(body.ids)
    raw_weights = rng.uniform(0.2, 1.0, size=body.ids)
    weights = raw_weights / raw_weights.sum()
    cov = factor_covariance(body.ids, rng)
    doc: dict[str, Any] = {
        "as_of": now_iso(),
        "version": VERSION_PLACEHOLDER,
        "weights": dict(zip(ids, weights.tolist(), strict=True)),
    }
    if body.covariance_by_ref:
        doc["covariance"] = {"ids": ids, "matrix": cov.tolist()}
    else:
        rows = cov.tolist()
        doc["covariance"] = {f"{a},{b}": rows[i][j] for i, a in enumerate(ids) for j, b in enumerate(ids)}
    if body.returns:
        daily = rng.normal(0.0004, 0.011, size=(body.ids, body.returns))
        doc["realized_returns"] = dict(zip(ids, daily.tolist(), strict=True))
    shocks = rng.normal(-0.08, 0.05, size=body.ids)
    doc["stress"] = {
        "crash": {
            "max_drawdown": float(rng.uniform(0.15, 0.35)),
            "shocks": dict(zip(ids, shocks.tolist(), strict=True)),
        },
        "slowdown": {"max_drawdown": float(rng.uniform(0.05, 0.15))},
    }
    doc["ttl_sec"] = 3600
    return doc


def sample_payload(seed: int = SEED, strategies: int = 20, points: int = 25) -> str:
    """The old sample: equal weights (0.05 each), the upper triangle of a keyed covariance with
    the diagonal (each symmetric pair once), short decimals."""
    rng = random.Random(seed)
    ids = [f"strategy_{i:02d}" for i in range(strategies)]
    doc: dict[str, Any] = {
        "as_of": now_iso(),
        "version": VERSION_PLACEHOLDER,
        "weights": dict.fromkeys(ids, round(1 / strategies, 6)),
        "covariance": {
            f"{a},{b}": round(rng.uniform(0.001, 0.09), 6) for i, a in enumerate(ids) for b in ids[i:]
        },
        "realized_returns": {a: [round(rng.uniform(-0.03, 0.03), 6) for _ in range(points)] for a in ids},
        "stress": {"crash": {"max_drawdown": 0.25}, "slowdown": {"max_drawdown": 0.12}},
        "ttl_sec": 3600,
    }
    return json.dumps(doc)


def payload(name: str, covariance_ref: str | None = None) -> str:
    """Body ``name`` as the JSON text the bench sends; ``c`` needs its ``covariance_ref``."""
    body = BODIES[name]
    if name == "sample":
        return sample_payload()
    doc = producer_document(body)
    if body.covariance_by_ref:
        if covariance_ref is None:
            raise ValueError("body c needs the covariance_ref its covariance was offloaded to")
        del doc["covariance"]
        doc["covariance_ref"] = covariance_ref
    return json.dumps(doc)
