"""HTTP benchmarks against one running server: POST and GET throughput ratios against bare
endpoints (alternating, drained rounds), commit-to-publish latency, and memory after many writes."""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import WORLDS, BenchError, body_with_version, http
from load import Endpoint, LoadOptions, WrkResult, hub_post, run_wrk, run_wrk_count
from paced import post_paced
from report import Line, at_least, at_most, latency_pair
from server import (
    COMMIT_TO_PUBLISH,
    Drain,
    Server,
    bucket_quantile,
    histogram,
    histogram_delta,
    scrape,
    wait_drained,
)

POST_GOAL = 0.6
GET_GOAL = 0.8
MEMORY_GOAL_MB = 200.0
COMMIT_TO_PUBLISH_P50_GOAL_MS = 50.0  # bench-chosen goals (DESIGN.md sets none)
COMMIT_TO_PUBLISH_P99_GOAL_MS = 250.0


@dataclass(frozen=True)
class RunOptions:
    """Rounds, durations and the drain bound of the throughput comparisons."""

    rounds: int
    duration_s: int
    warmup_s: int
    drain_timeout_s: float
    relays: bool = True  # False: the server leaves its events in the outbox, nothing to drain


@dataclass(frozen=True)
class Target:
    """An endpoint and how it is labelled in the report."""

    endpoint: Endpoint
    label: str


@dataclass
class Rounds:
    """Every run of one endpoint in a comparison, with its drains and end-of-run backlogs."""

    endpoint: Endpoint
    label: str
    results: list[WrkResult] = field(default_factory=list)
    drains: list[Drain] = field(default_factory=list)
    deferred: list[Drain] = field(default_factory=list)  # hub POSTs: draining what a run left

    @property
    def backlogs_at_end(self) -> list[int]:
        """Outbox events each run left to the relay/consumer when it ended."""
        return [d.backlog_before for d in self.deferred]

    @property
    def rps_with_deferred(self) -> float:
        """Median over rounds of requests / (run time + time to drain what the run deferred)."""
        return statistics.median(
            r.requests / (r.duration_s + d.seconds) for r, d in zip(self.results, self.deferred, strict=True)
        )

    @property
    def rps(self) -> float:
        """Median requests/s over rounds."""
        return statistics.median(r.rps for r in self.results)

    def latency(self, percentile: str) -> float:
        """Median over rounds of a latency percentile (ms)."""
        return statistics.median(r.latency_ms[percentile] for r in self.results)

    def summary(self) -> str:
        """``hub 1246 rps (p50 21.9 / p99 84.2 ms)``."""
        p50, p99 = self.latency("p50"), self.latency("p99")
        return f"{self.label} {self.rps:.0f} rps (p50 {p50:.1f} / p99 {p99:.1f} ms)"


def measure(rounds: Rounds, server: Server, load: LoadOptions, run: RunOptions, *, post: bool) -> str:
    """Drain the outbox, run wrk once; after hub POSTs, time the drain of what the run deferred."""
    if not run.relays:
        result = run_wrk(rounds.endpoint, server, load, run.duration_s)
        rounds.results.append(result)
        return f"{rounds.label} {result.rps:.0f} rps (p50 {result.latency_ms['p50']:.1f} ms) [no relay]"
    drain = wait_drained(server, run.drain_timeout_s)
    rounds.drains.append(drain)
    result = run_wrk(rounds.endpoint, server, load, run.duration_s)
    rounds.results.append(result)
    p50 = result.latency_ms["p50"]
    text = f"{rounds.label} {result.rps:.0f} rps (p50 {p50:.1f} ms) [before: {drain.text()}"
    if post and rounds.endpoint.name == "hub":
        deferred = wait_drained(server, run.drain_timeout_s)
        rounds.deferred.append(deferred)
        text += f"; backlog at end {deferred.backlog_before}, {deferred.text()}"
    return text + "]"


def compare(
    kind: str, hub: Target, baselines: Sequence[Target], server: Server, load: LoadOptions, run: RunOptions
) -> tuple[Rounds, list[Rounds]]:
    """Warm every endpoint up, then ``run.rounds`` rounds; odd rounds run the baselines first,
    even rounds the hub first (pair order alternates). Every run starts on a drained outbox."""
    hub_rounds = Rounds(hub.endpoint, hub.label)
    bare_rounds = [Rounds(b.endpoint, b.label) for b in baselines]
    everything = [*bare_rounds, hub_rounds]
    if run.warmup_s > 0:
        for rounds in everything:
            run_wrk(rounds.endpoint, server, load, run.warmup_s)
    for round_no in range(1, run.rounds + 1):
        order = everything if round_no % 2 else everything[::-1]
        texts = [measure(rounds, server, load, run, post=kind == "POST") for rounds in order]
        print(f"  {kind} round {round_no}/{run.rounds}: " + " | ".join(texts), flush=True)
    return hub_rounds, bare_rounds


def ratio_lines(config: str, kind: str, goal: float, hub: Rounds, bares: Sequence[Rounds]) -> list[Line]:
    """One line per baseline: median hub rps / median baseline rps."""
    lines = []
    for bare in bares:
        details = f"{hub.summary()} vs {bare.summary()}"
        if hub.deferred:
            details += (
                f"; hub left {'/'.join(map(str, hub.backlogs_at_end))} events in the outbox at the end "
                f"of its rounds: {hub.rps_with_deferred:.0f} rps counting their drain"
            )
        if any(not d.drained for r in (hub, bare) for d in (*r.drains, *r.deferred)):
            details += "; WARNING: a round started undrained"
        lines.append(at_least(config, f"{kind} {hub.label}/{bare.label}", hub.rps / bare.rps, goal, details))
    return lines


# --------------------------------------------------------------------------- POST / GET


def post_baselines(server: Server, body_file: Path, payload: str) -> tuple[list[Target], list[Line]]:
    """``/bench/parse`` (orjson on the raw body) and, when the server has it,
    ``/bench/parse-dict`` (FastAPI ``dict`` body); a missing one gives a skipped line."""
    raw = Target(Endpoint("bare", "POST", "/bench/parse", 201, body_file), "bare(raw orjson)")
    idiomatic = Target(
        Endpoint("bare-dict", "POST", "/bench/parse-dict", 201, body_file), "bare(FastAPI dict body)"
    )
    status, answer = http(
        "POST", f"{server.url}{idiomatic.endpoint.path}", body_with_version(payload, "probe")
    )
    if status == 201:
        return [raw, idiomatic], []
    if status != 404:
        raise BenchError(f"POST {idiomatic.endpoint.path}: {status} {answer[:300]!r}")
    print(f"  POST {idiomatic.endpoint.path} is MISSING on this server (404): that baseline is skipped")
    return [raw], [Line("", f"POST hub/{idiomatic.label}", "n/a", f">= {POST_GOAL:g}", None, "404")]


def bench_post(
    config: str, server: Server, body_file: Path, payload: str, load: LoadOptions, run: RunOptions
) -> list[Line]:
    """Hub writes against the parse-only baselines."""
    baselines, skipped = post_baselines(server, body_file, payload)
    hub, bares = compare("POST", Target(hub_post(body_file), "hub"), baselines, server, load, run)
    lines = ratio_lines(config, "POST", POST_GOAL, hub, bares)
    return lines + [Line(config, s.name, s.value, s.goal, None, s.details) for s in skipped]


def seed_worlds(server: Server, payload: str) -> None:
    """One fresh snapshot per world, so every ``latest`` exists."""
    tag = secrets.token_hex(4)
    for i in range(WORLDS):
        url = f"{server.url}/risk-hub/worlds/w{i:03d}/snapshots"
        status, answer = http("POST", url, body_with_version(payload, f"seed-{tag}-{i:03d}"))
        if status != 201:
            raise BenchError(f"seeding w{i:03d}: {status} {answer[:300]!r}")


def bench_get(config: str, server: Server, payload: str, load: LoadOptions, run: RunOptions) -> list[Line]:
    """``latest`` against a constant answer of the same size."""
    seed_worlds(server, payload)
    status, answer = http("GET", f"{server.url}/risk-hub/worlds/w000/snapshots/latest")
    if status != 200:
        raise BenchError(f"GET latest: {status} {answer[:300]!r}")
    print(f"  GET latest answer: {len(answer)} bytes")
    latest = Endpoint("latest", "GET", "/risk-hub/worlds/{world}/snapshots/latest", 200)
    constant = Target(Endpoint("constant", "GET", f"/bench/constant?size={len(answer)}", 200), "constant")
    hub, bares = compare("GET", Target(latest, "latest"), [constant], server, load, run)
    return ratio_lines(config, "GET", GET_GOAL, hub, bares)


# --------------------------------------------------------------------------- latency


def bench_commit_to_publish(
    config: str, server: Server, payload: str, posts: int, rate: float, drain_timeout_s: float
) -> list[Line]:
    """p50/p99 of ``risk_hub_outbox_commit_to_publish_seconds`` over ``posts`` paced writes: the
    histogram's difference between two scrapes, quantiles interpolated inside buckets."""
    wait_drained(server, drain_timeout_s)
    before = histogram(scrape(server), COMMIT_TO_PUBLISH)
    started = time.monotonic()
    post_paced(server.url, payload, posts, rate, f"lat-{secrets.token_hex(4)}")
    elapsed = time.monotonic() - started
    drain = wait_drained(server, drain_timeout_s)
    delta = histogram_delta(before, histogram(scrape(server), COMMIT_TO_PUBLISH))
    observed = int(max(delta.values(), default=0))
    print(
        f"  commit->publish: {posts} POSTs in {elapsed:.1f} s ({posts / elapsed:.0f}/s), {drain.text()}, "
        f"{observed} observations"
    )
    if observed < posts:
        raise BenchError(f"commit->publish histogram saw {observed} of {posts} events")
    details = f"{posts} POSTs at {posts / elapsed:.0f}/s; bucket-interpolated from the histogram"
    p50, p99 = (bucket_quantile(delta, q) * 1000 for q in (0.5, 0.99))
    goals = (COMMIT_TO_PUBLISH_P50_GOAL_MS, COMMIT_TO_PUBLISH_P99_GOAL_MS)
    return latency_pair(config, "commit->publish", (p50, p99), goals, details)


# --------------------------------------------------------------------------- memory


def bench_memory(
    config: str, server: Server, body_file: Path, load: LoadOptions, posts: int, drain_timeout_s: float
) -> Line:
    """RSS of a fresh server after ``posts`` unique snapshot writes, once its outbox drained."""
    before = server.memory_kib()
    result = run_wrk_count(hub_post(body_file), server, load, posts, max_s=3600)
    drain = wait_drained(server, drain_timeout_s)
    after = server.memory_kib()
    print(
        f"  MEM: {result.statuses.get(201, 0)} POSTs at {result.rps:.0f} rps, "
        f"backlog at end {drain.backlog_before}, {drain.text()}"
    )
    after_mb = after["VmRSS"] / 1024
    details = (
        f"RSS after {result.statuses.get(201, 0)} POSTs (+<= {load.connections} in flight) over {WORLDS} "
        f"worlds at {result.rps:.0f} rps, after the outbox drained; before {before['VmRSS'] / 1024:.0f} MB, "
        f"peak {after['VmHWM'] / 1024:.0f} MB"
    )
    return at_most(config, "MEM RSS", after_mb, MEMORY_GOAL_MB, "MB", details)
