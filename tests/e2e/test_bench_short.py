"""`make bench`, short: the runner's bodies are shaped like a numpy producer's, and one round of
the POST comparisons runs end to end on real servers (embedded, and PostgreSQL + Redis against
the bare asyncpg endpoint), every line with a ratio."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bodies  # bench/ is a directory of scripts, not a package

RATIO_LINE = re.compile(r"^(?P<config>\S+)\s+(?P<name>POST \S+ hub/bare\([^)]*\))\s+(?P<value>\d+\.\d\d)\s")


def test_body_a_is_a_full_precision_positive_definite_matrix_written_out() -> None:
    doc = json.loads(bodies.payload("a").replace(bodies.VERSION_PLACEHOLDER, "v"))
    ids = sorted(doc["weights"])
    assert len(ids) == 20 and len(doc["covariance"]) == 400
    matrix = np.array([[doc["covariance"][f"{a},{b}"] for b in ids] for a in ids])
    assert np.array_equal(matrix, matrix.T)
    assert np.linalg.eigvalsh(matrix).min() > 0
    text = bodies.payload("a")
    assert re.search(r"\d\.\d{15,}e-0[5-9]", text), "no full-precision float in exponent form"
    assert sum(abs(v) < 1e-4 for v in matrix.ravel()) > 200  # daily scale: most below 1e-4


def test_body_b_adds_a_year_of_daily_returns_and_c_refers_to_its_covariance() -> None:
    doc_b = json.loads(bodies.payload("b"))
    assert {len(series) for series in doc_b["realized_returns"].values()} == {250}
    doc_c = json.loads(bodies.payload("c", covariance_ref="file:///x/y.json"))
    assert len(doc_c["weights"]) == 200 and doc_c["covariance_ref"] == "file:///x/y.json"
    assert "covariance" not in doc_c


@pytest.mark.parametrize(
    ("config", "only", "bodies_arg", "expected"),
    [
        (
            "embedded-api",
            "post",
            "a,c",
            {"POST a hub/bare(FastAPI dict body)", "POST c hub/bare(FastAPI dict body)"},
        ),
        # the latency runs on a server of its own that relays: the API-only one leaves its events
        (
            "pg-redis",
            "post,latency",
            "a",
            {"POST a hub/bare(asyncpg insert)", "POST a hub/bare(FastAPI dict body)"},
        ),
    ],
)
def test_one_short_round_prints_every_ratio(
    config: str, only: str, bodies_arg: str, expected: set[str]
) -> None:
    argv = [sys.executable, "bench/run.py", "--config", config, "--only", only, "--bodies", bodies_arg]
    argv += ["--rounds", "1", "--duration", "1", "--warmup", "0", "--latency-posts", "50"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ratios = {m["name"]: float(m["value"]) for m in map(RATIO_LINE.match, done.stdout.splitlines()) if m}
    assert expected <= set(ratios), done.stdout[-3000:]
    assert all(0 < value < 5 for value in ratios.values()), ratios
    if "latency" in only:
        assert re.search(r"^pg-redis\s+commit->publish p50\s+\d+\.\d ms .* ok ", done.stdout, re.M), (
            done.stdout[-3000:]
        )
