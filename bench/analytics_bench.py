"""Cost of the risk analytics per snapshot, part by part, next to one eigvalsh of the same matrix.

    uv run python bench/analytics_bench.py          (also part of `make bench`, config analytics)

For 20, 200 and 1,000 ids (dense covariance from seeded random factor loadings, B B' + diag, at
full float precision, by ref in a file blob store; 250 daily returns per id for 20 and 200 ids;
stress with pnl, per-id shocks and returns) it prints the median cost of:
(r) resolving the covariance ref as the consumer does (blob read, sha256 check, JSON parse),
(m) building the float matrix from the parsed lists, (b) analyze() given the matrix, (c) one
numpy.linalg.eigvalsh of the matrix (the PSD check's own floor), and (w) the whole `risk` worker
on the resolved parts (matrix, analytics, limits). Goals: (b)/(c) <= 2 at 1,000 ids; at 20 ids
the worker costs less than the hub's write path, timed in the same run in-process
(``Hub.write_snapshot`` on embedded SQLite, same snapshot inline, unique versions). Steps run
side by side, alternating order, so drift of this machine's speed hits them alike; medians.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from report import Line, at_most, info

from riskhub.blobs import FileBlobStore, read_part
from riskhub.bootstrap import build_components
from riskhub.config import Settings
from riskhub.risk.analytics import analyze
from riskhub.risk.workers import SnapshotView, risk

SIZES = (20, 200, 1000)
RETURN_DAYS = 250
WITH_RETURNS = frozenset({20, 200})
FACTORS = 10
SEED = 20240601
# (calls per timing, repetitions): each timing well above timer resolution, the whole run ~15 s.
PLAN = {20: (200, 15), 200: (10, 11), 1000: (1, 9)}


@dataclass(frozen=True, slots=True)
class Case:
    """One snapshot's parts: weights, the covariance part as JSON bytes, returns, stress."""

    size: int
    weights: dict[str, float]
    covariance_json: bytes
    returns: dict[str, list[float]] | None
    stress: dict[str, Any]


def make_case(size: int) -> Case:
    """A realistic snapshot of ``size`` ids, the same on every run (seeded)."""
    rng = np.random.default_rng(SEED + size)
    ids = [f"strat-{i:04d}" for i in range(size)]
    loadings = rng.normal(0.0, 0.01, size=(size, FACTORS))
    matrix = loadings @ loadings.T + np.diag(rng.uniform(1e-5, 4e-4, size))
    w = rng.uniform(-0.2, 1.0, size)
    w /= w.sum()
    returns = None
    if size in WITH_RETURNS:
        daily = rng.normal(0.0003, 1.0, size=(RETURN_DAYS, FACTORS)) @ loadings.T
        daily += rng.normal(0.0, 0.01, size=(RETURN_DAYS, size))
        returns = {k: daily[:, i].tolist() for i, k in enumerate(ids)}
    stress = {
        "rates_up": {"pnl": -0.08},
        "equity_crash": {"shocks": {k: -0.2 for k in ids[: max(1, size // 4)]}},
        "vol_spike": {"return": -0.03, "vix": 45.0},
    }
    covariance_json = orjson.dumps({"ids": ids, "matrix": matrix.tolist()})  # repr floats: full precision
    return Case(size, dict(zip(ids, w.tolist(), strict=True)), covariance_json, returns, stress)


def _seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _side_by_side(steps: dict[str, Callable[[], object]], calls: int, repetitions: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for repetition in range(repetitions):
        # alternate the order so that neither side always runs right after the other's warm cache
        order = list(steps) if repetition % 2 == 0 else list(reversed(steps))
        for name in order:
            samples[name].append(_seconds_per_call(steps[name], calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(case: Case, blobs: FileBlobStore, loop: asyncio.AbstractEventLoop) -> dict[str, float]:
    """Median seconds per call of each step, timed side by side."""
    ref = loop.run_until_complete(blobs.put(case.covariance_json, pin=True))
    parsed = loop.run_until_complete(read_part(blobs, ref))
    matrix = np.asarray(parsed["matrix"], dtype=np.float64)
    as_array = {"ids": parsed["ids"], "matrix": matrix}
    stored = {
        "world_id": "w1",
        "version": "v1",
        "hash": "sha256:x",
        "weights": case.weights,
        "covariance_ref": ref,
        "provenance": {"actor": "bench", "stage": "live"},
    }
    view = SnapshotView(
        stored, {"covariance": parsed, "realized_returns": case.returns, "stress": case.stress}
    )
    report = analyze(case.weights, covariance=as_array, realized_returns=case.returns, stress=case.stress)
    if report.method != "covariance" or any(f.severity != "info" for f in report.findings):
        raise RuntimeError(f"{case.size} ids: unexpected report {report.method} {report.findings}")
    steps: dict[str, Callable[[], object]] = {
        "resolve": lambda: loop.run_until_complete(read_part(blobs, ref)),
        "matrix": lambda: np.asarray(parsed["matrix"], dtype=np.float64),
        "analyze": lambda: analyze(
            case.weights, covariance=as_array, realized_returns=case.returns, stress=case.stress
        ),
        "eigvalsh": lambda: np.linalg.eigvalsh(matrix),
        "worker": lambda: loop.run_until_complete(risk(view)),
    }
    return _side_by_side(steps, *PLAN[case.size])


def write_path_cost(case: Case, loop: asyncio.AbstractEventLoop, workdir: str) -> float:
    """Median seconds of one ``Hub.write_snapshot`` of the case as a producer sends it (inline)."""
    settings = Settings(
        data_dir=f"{workdir}/hub",
        tokens=["bench-token-0123456789abcdef0123456789"],
        run_relay=False,
        run_consumer=False,
    )
    parts = build_components(settings)
    loop.run_until_complete(parts.start(background=False))
    document = {
        "as_of": "2026-01-01T00:00:00Z",
        "weights": case.weights,
        "covariance": orjson.loads(case.covariance_json),
        "realized_returns": case.returns,
        "stress": case.stress,
        "ttl_sec": 3600,
    }
    counter = iter(range(10**9))

    def write() -> None:
        raw = orjson.dumps({**document, "version": f"v{next(counter)}"})
        loop.run_until_complete(parts.hub.write_snapshot("w1", raw, actor="bench", stage="live"))

    try:
        return _side_by_side({"write": write}, 100, 11)["write"]
    finally:
        loop.run_until_complete(parts.stop())


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def analytics_costs() -> list[tuple[int, dict[str, float]]]:
    """Per size, the median cost of each step (and, at 20 ids, of the hub's write path)."""
    loop = asyncio.new_event_loop()
    results = []
    with tempfile.TemporaryDirectory(prefix="riskhub-analytics-") as workdir:
        blobs = FileBlobStore(Path(workdir) / "blobs")
        for size in SIZES:
            case = make_case(size)
            cost = measure(case, blobs, loop)
            if size == min(SIZES):
                cost["write"] = write_path_cost(case, loop, workdir)
            results.append((size, cost))
    loop.close()
    return results


def describe(size: int, cost: dict[str, float]) -> str:
    """One line of costs for a size."""
    text = (
        f"(r) resolve {_us(cost['resolve'])} | (m) matrix {_us(cost['matrix'])} | "
        f"(b) analyze {_us(cost['analyze'])} | (c) eigvalsh {_us(cost['eigvalsh'])} | "
        f"(w) worker {_us(cost['worker'])} | (b)/(c) {cost['analyze'] / cost['eigvalsh']:.2f}"
    )
    if "write" in cost:
        text += f" | hub write path {_us(cost['write'])}, worker/write {cost['worker'] / cost['write']:.2f}"
    return text


def analytics_lines() -> list[Line]:
    """The table lines of ``make bench`` (config analytics): each size's costs, and the goals."""
    print("\nconfig analytics: the risk worker's costs per snapshot, in process", flush=True)
    lines = []
    for size, cost in analytics_costs():
        print(f"  {size} ids: {describe(size, cost)}", flush=True)
        lines.append(info("analytics", f"{size} ids worker", _us(cost["worker"]), describe(size, cost)))
        if size == max(SIZES):
            ratio = cost["analyze"] / cost["eigvalsh"]
            lines.append(at_most("analytics", f"{size} ids analyze/eigvalsh", ratio, 2.0, "x", ""))
        if "write" in cost:
            ratio = cost["worker"] / cost["write"]
            lines.append(at_most("analytics", f"{size} ids worker/hub write path", ratio, 1.0, "x", ""))
    return lines


def main() -> None:
    """Print one line per size."""
    load = os.getloadavg()[0]
    print(f"nproc {os.cpu_count()}, load {load:.2f}, numpy {np.__version__}, seed {SEED}")
    for size, cost in analytics_costs():
        print(f"{size:>5} ids  {describe(size, cost)}")


if __name__ == "__main__":
    main()
