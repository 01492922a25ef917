"""Snapshot bodies for the soak: shaped like a producer's (full-precision floats, a positive
semi-definite covariance from a one-factor model, daily return series, per-id stress shocks)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from riskhub.blobs import content_address
from riskhub.contract import OFFLOADABLE_PARTS
from riskhub.contract.canonical import canonical_json

SMALL_IDS, SMALL_POINTS = 6, 20  # every part stays inline (under HUB_INLINE_THRESHOLD)
LARGE_IDS, LARGE_POINTS = 16, 30  # covariance and returns over both thresholds: offloaded
HUB_INLINE_THRESHOLD = 4096  # RISKHUB_INLINE_COV_THRESHOLD of the soak's serve processes
PRODUCER_INLINE_THRESHOLD = 1024  # the offloading producer's inline_cov_threshold


def now_z() -> str:
    """The current time as the ``as_of`` of a fresh snapshot."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def snapshot_doc(rng: random.Random, version: str, *, large: bool, ttl_s: int) -> dict[str, Any]:
    """A valid snapshot (no world, actor or stage: the producer adds those)."""
    count, points = (LARGE_IDS, LARGE_POINTS) if large else (SMALL_IDS, SMALL_POINTS)
    ids = [f"s{i:02d}" for i in range(count)]
    raw = [rng.uniform(0.5, 1.5) for _ in ids]
    weights = {i: round(w / sum(raw), 6) for i, w in zip(ids, raw, strict=True)}
    weights[ids[-1]] = round(1.0 - sum(weights[i] for i in ids[:-1]), 6)
    market = rng.uniform(0.00005, 0.0002)
    betas = {i: rng.uniform(0.5, 1.5) for i in ids}
    idio = {i: rng.uniform(0.00002, 0.0003) for i in ids}
    covariance = {
        f"{a},{b}": betas[a] * betas[b] * market + (idio[a] if a == b else 0.0) for a in ids for b in ids
    }
    return {
        "as_of": now_z(),
        "version": version,
        "weights": weights,
        "covariance": covariance,
        "realized_returns": {i: [rng.gauss(0.0, 0.012) for _ in range(points)] for i in ids},
        "stress": {
            "crash": {"shocks": {i: -rng.uniform(0.05, 0.3) for i in ids}},
            "slowdown": {"max_drawdown": round(rng.uniform(0.05, 0.15), 4)},
        },
        "ttl_sec": ttl_s,
    }


def hub_offloaded_addresses(body: dict[str, Any]) -> set[str]:
    """Content addresses of the parts the hub will offload from ``body`` (the normalized body a
    producer sends: the hub re-normalizes it to the same parts) before its transaction."""
    addresses = set()
    for part in OFFLOADABLE_PARTS:
        if part in body:
            content = canonical_json(body[part])
            if len(content) > HUB_INLINE_THRESHOLD:
                addresses.add(content_address(content))
    return addresses


def ref_address(ref: str) -> str:
    """The content address a blob ref names (``s3://bucket/prefix/<hex>.json``)."""
    return ref.rsplit("/", 1)[-1].removesuffix(".json")
