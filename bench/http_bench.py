"""HTTP benchmarks against one running server: POST and GET throughput ratios against bare
endpoints (alternating, drained rounds), commit-to-publish latency, and memory after many writes."""

from __future__ import annotations

import json
import secrets
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bodies import BODIES, GOAL_BODY, BenchBody, payload, producer_document
from common import WORLDS, BenchError, body_with_version, http
from configs import Config
from load import Endpoint, LoadOptions, WrkResult, hub_post, run_wrk, run_wrk_count
from paced import post_paced
from report import Line, at_least, at_most, info, latency_pair
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

MEMORY_GOAL_MB = 150.0
MEMORY_GROWTH_GOAL_MB = 10.0  # "flat": what the last 60% of the writes may add
MEMORY_CHECKPOINTS = 5
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


def ratio_lines(
    config: str,
    kind: str,
    hub: Rounds,
    bares: Sequence[Rounds],
    goal: tuple[str, float | None],
    count_drain: bool = False,
) -> list[Line]:
    """One line per baseline: median hub rps / median baseline rps. ``goal`` names the baseline
    the goal applies to (the other lines are info); with ``count_drain`` the hub's rps counts the
    time to drain what each run deferred."""
    lines = []
    goal_baseline, goal_value = goal
    for bare in bares:
        details = f"{hub.summary()} vs {bare.summary()}"
        hub_rps = hub.rps
        if hub.deferred:
            details += (
                f"; hub left {'/'.join(map(str, hub.backlogs_at_end))} events in the outbox at the end "
                f"of its rounds: {hub.rps_with_deferred:.0f} rps counting their drain"
            )
            if count_drain:
                hub_rps = hub.rps_with_deferred
                details += " (the ratio's)"
        if any(not d.drained for r in (hub, bare) for d in (*r.drains, *r.deferred)):
            details += "; WARNING: a round started undrained"
        name = f"{kind} {hub.label}/{bare.label}"
        if bare.endpoint.name == goal_baseline and goal_value is not None:
            lines.append(at_least(config, name, hub_rps / bare.rps, goal_value, details))
        else:
            lines.append(info(config, name, f"{hub_rps / bare.rps:.2f}", details))
    return lines


# --------------------------------------------------------------------------- POST / GET


BASELINES = {
    "bare": Target(Endpoint("bare", "POST", "/bench/parse", 201), "bare(raw orjson)"),
    "bare-dict": Target(Endpoint("bare-dict", "POST", "/bench/parse-dict", 201), "bare(FastAPI dict body)"),
    "bare-pg": Target(Endpoint("bare-pg", "POST", "/bench/pg-insert", 201), "bare(asyncpg insert)"),
}


def post_baselines(server: Server, body: BenchBody, wanted: Sequence[str]) -> list[Target]:
    """The ``wanted`` bare endpoints with the body's file; each must answer 201 on this server."""
    targets = []
    for name in wanted:
        target = BASELINES[name]
        status, answer = http("POST", f"{server.url}{target.endpoint.path}", body.bytes_for("probe"))
        if status != 201:
            raise BenchError(f"POST {target.endpoint.path}: {status} {answer[:300]!r}")
        targets.append(Target(replace(target.endpoint, body_file=body.file), target.label))
    return targets


def bench_post(
    config: Config, server: Server, body: BenchBody, load: LoadOptions, run: RunOptions
) -> list[Line]:
    """Hub writes of one body against the bare endpoints (raw orjson, FastAPI dict, and the
    asyncpg insert next to PostgreSQL)."""
    wanted = ["bare", "bare-dict"] + (["bare-pg"] if config.post_baseline == "bare-pg" else [])
    baselines = post_baselines(server, body, wanted)
    hub, bares = compare(
        f"POST {body.name}", Target(hub_post(body.file), f"{body.name} hub"), baselines, server, load, run
    )
    goal = (config.post_baseline, config.post_goal if body.name == GOAL_BODY else None)
    return ratio_lines(config.name, "POST", hub, bares, goal, config.count_drain)


def prepare_body(name: str, server: Server, workdir: Path) -> BenchBody:
    """Body ``name`` written to a file for wrk. Body ``c`` sends its covariance by ref, as a
    producer that offloaded it: one write with the covariance inline, which the hub offloads to
    its blob store, gives the ref every later write uses (and checks against its blob)."""
    ref = None
    if BODIES[name].covariance_by_ref:
        ref = offloaded_covariance_ref(server, name)
    text = payload(name, covariance_ref=ref)
    file = workdir / f"body-{name}.json"
    file.write_text(text)
    return BenchBody(name, text, file)


def offloaded_covariance_ref(server: Server, name: str) -> str:
    """Write body ``name`` once with its covariance inline (world ``prep``); the ref the hub
    offloaded it to."""
    doc = producer_document(BODIES[name])
    inline = body_with_version(json.dumps(doc), f"prep-{secrets.token_hex(4)}")
    base = f"{server.url}/risk-hub/worlds/prep/snapshots"
    status, answer = http("POST", base, inline, timeout=60.0)
    if status != 201:
        raise BenchError(f"writing body {name} inline: {status} {answer[:300]!r}")
    status, answer = http("GET", f"{base}/latest", timeout=60.0)
    stored = json.loads(answer) if status == 200 else {}
    if "covariance_ref" not in stored:
        raise BenchError(f"body {name}: the hub did not offload the covariance ({status} {answer[:300]!r})")
    ref: str = stored["covariance_ref"]
    return ref


def seed_worlds(server: Server, payload: str) -> None:
    """One fresh snapshot per world, so every ``latest`` exists."""
    tag = secrets.token_hex(4)
    for i in range(WORLDS):
        url = f"{server.url}/risk-hub/worlds/w{i:03d}/snapshots"
        status, answer = http("POST", url, body_with_version(payload, f"seed-{tag}-{i:03d}"))
        if status != 201:
            raise BenchError(f"seeding w{i:03d}: {status} {answer[:300]!r}")


def bench_get(
    config: Config, server: Server, body: BenchBody, load: LoadOptions, run: RunOptions
) -> list[Line]:
    """``latest`` against a constant answer of the same size."""
    seed_worlds(server, body.payload)
    status, answer = http("GET", f"{server.url}/risk-hub/worlds/w000/snapshots/latest")
    if status != 200:
        raise BenchError(f"GET latest: {status} {answer[:300]!r}")
    print(f"  GET latest answer: {len(answer)} bytes")
    latest = Endpoint("latest", "GET", "/risk-hub/worlds/{world}/snapshots/latest", 200)
    constant = Target(Endpoint("constant", "GET", f"/bench/constant?size={len(answer)}", 200), "constant")
    hub, bares = compare("GET", Target(latest, f"{body.name} latest"), [constant], server, load, run)
    return ratio_lines(config.name, "GET", hub, bares, ("constant", config.get_goal))


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
    config: str, server: Server, body: BenchBody, load: LoadOptions, posts: int, drain_timeout_s: float
) -> list[Line]:
    """RSS of a fresh server after ``posts`` unique snapshot writes, once its outbox drained, and
    whether it stays flat: RSS measured after each fifth of the writes (each drained)."""
    before = server.memory_kib()
    checkpoints: list[float] = []
    written, rps = 0, []
    for _ in range(MEMORY_CHECKPOINTS):
        result = run_wrk_count(hub_post(body.file), server, load, posts // MEMORY_CHECKPOINTS, max_s=3600)
        drain = wait_drained(server, drain_timeout_s)
        written += result.statuses.get(201, 0)
        rps.append(result.rps)
        checkpoints.append(server.memory_kib()["VmRSS"] / 1024)
        print(f"  MEM: {written} POSTs at {result.rps:.0f} rps, {drain.text()}, RSS {checkpoints[-1]:.0f} MB")
    after = server.memory_kib()
    shown = " / ".join(f"{mb:.0f}" for mb in checkpoints)
    details = (
        f"RSS after {written} POSTs of body {body.name} (+<= {load.connections} in flight per fifth) over "
        f"{WORLDS} worlds at {statistics.median(rps):.0f} rps, after the outbox drained; before "
        f"{before['VmRSS'] / 1024:.0f} MB, after each fifth {shown} MB, peak {after['VmHWM'] / 1024:.0f} MB"
    )
    growth = checkpoints[-1] - checkpoints[1]
    return [
        at_most(config, "MEM RSS", checkpoints[-1], MEMORY_GOAL_MB, "MB", details),
        at_most(config, "MEM growth 2nd..5th fifth", growth, MEMORY_GROWTH_GOAL_MB, "MB", "flat: " + shown),
    ]
