"""The ControlBus under faults, end to end: real `riskhub serve` and `riskhub worker` processes on
PostgreSQL + Redis + S3 and the session's Tansu broker. The broker is frozen mid-stream, a worker
is SIGKILLed mid-stream, two workers share the partitions: nothing is lost, no effect is doubled
and each world's snapshots are handled in POST order.

Each test gets a fresh schema (``production``), a fresh 3-partition topic (and its ``.dlq``) and a
fresh consumer group; worker processes are stopped at the end of each test, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import murmur2
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from riskhub.bus.kafka import read_topic

from conftest import SAMPLE, TOKEN, Production, ServerProcess
from services import KafkaService, create_topic, free_port, log_tail

PARTITIONS = 3
WORKERS_PER_EVENT = 2  # riskhub.risk.workers.DEFAULT_WORKERS: extended_validation, risk
WRITE = {
    "authorization": f"Bearer {TOKEN}",
    "x-actor": "gateway",
    "x-stage": "paper",
    "content-type": "application/json",
}
SAMPLE_DOC: dict[str, Any] = json.loads(SAMPLE.read_text())
ASSIGNED = re.compile(r"assigned partitions: \[(.*)\]")
Job = tuple[str, str]  # (world_id, version)


# --- deployment: a fresh namespace, topic and consumer group -------------------------------------


@dataclass
class Deployment:
    """One test's namespace in every service: schema/prefixes, topic (+ .dlq), consumer group."""

    kafka: KafkaService
    production: Production
    topic: str
    group: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """RISKHUB_* settings shared by the server and the workers."""
        return {
            **self.extra_env,
            **self.production.env(),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "RISKHUB_CONTROLBUS_BROKERS": self.kafka.bootstrap,
            "RISKHUB_CONTROLBUS_TOPIC": self.topic,
            "RISKHUB_DLQ_TOPIC": f"{self.topic}.dlq",
            "RISKHUB_CONSUMER_GROUP": self.group,
            "RISKHUB_CONSUMER_SESSION_TIMEOUT_MS": "2000",
            "RISKHUB_CONSUMER_HEARTBEAT_INTERVAL_MS": "300",
        }


@pytest.fixture
async def deployment(kafka: KafkaService, production: Production) -> Deployment:
    topic = f"policy-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka.bootstrap, topic, PARTITIONS)
    await create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    return Deployment(kafka, production, topic, f"group-{uuid.uuid4().hex[:8]}")


# --- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """A real `riskhub worker` process with its own /metrics port and log file."""

    env: dict[str, str]
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "riskhub.cli", "worker", "--metrics-port", str(self.metrics_port)],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop (SIGTERM by default, SIGKILL with sig=SIGKILL) and reap the process."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def assignment(self) -> set[int]:
        """Partitions of the latest assignment the worker logged (fails if the worker died)."""
        text = self.log_path.read_text(errors="replace")
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"worker is not running; log tail:\n{log_tail(self.log_path)}")
        found = ASSIGNED.findall(text)
        return {int(p) for p in re.findall(r"/(\d+)'", found[-1])} if found else set()


@pytest.fixture
def worker_factory(deployment: Deployment, tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    """Start worker processes in the test's group; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def factory() -> WorkerProcess:
        worker = WorkerProcess(deployment.env(), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.start()
        return worker

    yield factory
    for worker in started:
        worker.stop()


async def wait_for_assignment(workers: list[WorkerProcess], timeout_s: float = 30) -> None:
    """Wait until the workers' current assignments split all partitions between them, each busy."""

    async def split() -> bool:
        parts = [await asyncio.to_thread(w.assignment) for w in workers]
        covered = set().union(*parts)
        return all(parts) and covered == set(range(PARTITIONS)) and sum(map(len, parts)) == PARTITIONS

    await eventually(split, timeout_s, "consumer group assignment")


# --- shared helpers -------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout_s, f"{what}: not reached within {timeout_s}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def body(world: str, version: str, index: int) -> bytes:
    """A distinct snapshot per version; ``as_of`` increases with ``index``."""
    as_of = f"2025-01-01T{index // 3600:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z"
    return json.dumps(
        {**SAMPLE_DOC, "world_id": world, "version": version, "as_of": as_of, "ttl_sec": 3600}
    ).encode()


@dataclass
class Posted:
    world: str
    version: str
    status: int
    started: float
    ended: float


async def post_paced(
    client: httpx.AsyncClient,
    server: ServerProcess,
    jobs: list[Job],
    interval_s: float,
    on_each: Callable[[int], None] = lambda n: None,
    first_index: int = 0,
) -> list[Posted]:
    """POST the jobs one after another on a fixed schedule (one every ``interval_s``)."""
    results: list[Posted] = []
    t0 = time.monotonic()
    for n, (world, version) in enumerate(jobs):
        await asyncio.sleep(max(0.0, t0 + n * interval_s - time.monotonic()))
        started = time.monotonic()
        response = await client.post(
            f"{server.url}/risk-hub/worlds/{world}/snapshots",
            content=body(world, version, first_index + n),
            headers=WRITE,
            timeout=15,
        )
        results.append(Posted(world, version, response.status_code, started, time.monotonic()))
        on_each(len(results))
    return results


async def metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    """Sum of a metric's samples over all label sets."""
    text = (await client.get(url, timeout=5)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )


class Store:
    """Read-only queries in the test's PostgreSQL schema."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def processed(self) -> int:
        return int(
            await self.conn.fetchval("SELECT count(*) FROM risk_processed WHERE outcome = 'processed'")
        )

    async def pending(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM risk_outbox WHERE status = 'pending'"))

    async def counts(self) -> dict[str, int]:
        row = await self.conn.fetchrow(
            "SELECT (SELECT count(*) FROM risk_processed) AS keys,"
            " (SELECT count(*) FROM risk_processed WHERE outcome = 'processed') AS processed,"
            " (SELECT count(*) FROM risk_worker_results) AS results,"
            " (SELECT count(DISTINCT dedupe_key) FROM risk_worker_results) AS result_keys,"
            " (SELECT count(*) FROM risk_outbox) AS outbox,"
            " (SELECT count(*) FROM risk_outbox WHERE status = 'published') AS published"
        )
        return dict(row)

    async def handling_order(self) -> dict[str, list[str]]:
        """Per world, versions in the order they were handled (dedupe key world|version|...)."""
        rows = await self.conn.fetch(
            "SELECT dedupe_key FROM risk_processed ORDER BY processed_at, dedupe_key"
        )
        order: dict[str, list[str]] = {}
        for row in rows:
            world, version = row[0].split("|")[:2]
            order.setdefault(world, []).append(version)
        return order


@contextlib.asynccontextmanager
async def open_store(deployment: Deployment) -> AsyncIterator[Store]:
    production = deployment.production
    conn = await asyncpg.connect(
        production.postgres.dsn, server_settings={"search_path": production.namespace}
    )
    try:
        yield Store(conn)
    finally:
        await conn.close()


def expected_counts(n: int) -> dict[str, int]:
    """n snapshots, each processed once with one row per worker, each event published."""
    return {
        "keys": n,
        "processed": n,
        "results": WORKERS_PER_EVENT * n,
        "result_keys": n,
        "outbox": n,
        "published": n,
    }


async def topic_event_ids(bootstrap: str, topic: str) -> list[str]:
    """CloudEvent ids of every record on the topic."""
    records = await asyncio.wait_for(read_topic(bootstrap, topic), 20)
    return [json.loads(r.value)["id"] for r in records]


def partition_of(world: str) -> int:
    """The partition aiokafka's default partitioner gives a world's key."""
    return (murmur2(world.encode()) & 0x7FFFFFFF) % PARTITIONS


async def start_server(server_factory: Callable[..., ServerProcess], deployment: Deployment) -> ServerProcess:
    return await asyncio.to_thread(server_factory, **deployment.env())


async def start_workers(factory: Callable[[], WorkerProcess], count: int) -> list[WorkerProcess]:
    workers = [factory() for _ in range(count)]
    await wait_for_assignment(workers)
    return workers


# --- tests ----------------------------------------------------------------------------------------


async def test_broker_paused_mid_stream_loses_nothing_and_doubles_nothing(
    deployment: Deployment,
    kafka: KafkaService,
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[[], WorkerProcess],
) -> None:
    n, pause_s = 150, 4.0
    server = await start_server(server_factory, deployment)
    [worker] = await start_workers(worker_factory, 1)
    jobs = [(f"w{i % 6}", f"v{i:03d}") for i in range(n)]
    third = asyncio.Event()
    window: list[float] = []
    backlog_at_resume: list[int] = []

    async def freeze_broker(store: Store) -> None:
        await third.wait()
        kafka.pause()
        window.append(time.monotonic())
        try:
            await asyncio.sleep(pause_s)
            backlog_at_resume.append(await store.pending())
        finally:
            kafka.resume()
            window.append(time.monotonic())

    def on_each(done: int) -> None:
        if done == n // 3:
            third.set()

    async with open_store(deployment) as store, httpx.AsyncClient() as client:
        try:
            async with asyncio.TaskGroup() as tasks:
                posting = tasks.create_task(post_paced(client, server, jobs, 0.03, on_each))
                tasks.create_task(freeze_broker(store))
        finally:
            kafka.resume()
        posted = posting.result()
        assert [p.status for p in posted] == [201] * n  # the hub kept accepting while Kafka was frozen
        during_pause = sum(1 for p in posted if window[0] <= p.started and p.ended <= window[1])
        assert during_pause >= 10, during_pause
        assert backlog_at_resume[0] >= during_pause  # those events waited in the outbox
        drain_s = await eventually(lambda: _is(store.processed(), n), 60, f"{n} processed keys")
        await eventually(lambda: _published_all(store, n), 10, "outbox published")
        assert await store.counts() == expected_counts(n)
        ids = await topic_event_ids(kafka.bootstrap, deployment.topic)
        assert len(set(ids)) == n  # nothing lost on the way to the topic
        duplicates = len(ids) - n
        # every record on the topic, duplicates included, is handled (processed or deduplicated)
        await eventually(lambda: _handled_at_least(client, worker, len(ids)), 30, "duplicates handled")
        assert await metric(client, worker.metrics_url, "risk_hub_snapshot_processed_total") == n
        dedupes = await metric(client, worker.metrics_url, "risk_hub_snapshot_dedupe_total")
    assert dedupes >= duplicates
    print(f"\npaused {window[1] - window[0]:.1f}s, {during_pause} POSTs answered 201 during the pause,")
    print(f"outbox backlog {backlog_at_resume[0]} at the resume; topic records {len(ids)}", end=" ")
    print(f"({duplicates} duplicates), dedupes {dedupes:.0f}; drained {drain_s:.1f}s after the resume")


async def test_worker_killed_mid_stream_and_restarted_loses_nothing_and_doubles_nothing(
    deployment: Deployment,
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[[], WorkerProcess],
) -> None:
    n, before_kill = 150, 100
    server = await start_server(server_factory, deployment)
    [first] = await start_workers(worker_factory, 1)
    jobs = [(f"w{i % 6}", f"v{i:03d}") for i in range(n)]
    async with httpx.AsyncClient() as client, open_store(deployment) as store:

        async def kill_mid_stream() -> None:
            await eventually(lambda: _at_least(store.processed(), 30), 30, "first worker handling")
            await asyncio.to_thread(first.stop, signal.SIGKILL)

        async with asyncio.TaskGroup() as tasks:
            posting = tasks.create_task(post_paced(client, server, jobs[:before_kill], 0.02))
            tasks.create_task(kill_mid_stream())
        posted = posting.result()
        posted += await post_paced(client, server, jobs[before_kill:], 0.0, first_index=before_kill)
        assert [p.status for p in posted] == [201] * n
        killed_at = await store.processed()  # stable now: no worker runs
        assert 0 < killed_at < before_kill, killed_at  # killed mid-stream
        [second] = await start_workers(worker_factory, 1)
        drain_s = await eventually(lambda: _is(store.processed(), n), 60, f"{n} processed keys")
        await eventually(lambda: _published_all(store, n), 10, "outbox published")
        assert await store.counts() == expected_counts(n)
        # the new worker ran the workers exactly for what the killed one had not recorded
        assert await metric(client, second.metrics_url, "risk_hub_snapshot_processed_total") == n - killed_at
        redelivered = await metric(client, second.metrics_url, "risk_hub_snapshot_dedupe_total")
    print(f"\nworker killed after {killed_at} of {n} processed; restarted worker redelivered")
    print(f"{redelivered:.0f} already-processed records (deduplicated); drained {drain_s:.1f}s after restart")


async def test_two_workers_share_partitions_and_keep_per_world_order(
    deployment: Deployment,
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[[], WorkerProcess],
) -> None:
    worlds, versions = [f"w{i}" for i in range(6)], 20
    assert {partition_of(w) for w in worlds} == set(range(PARTITIONS))  # every partition gets worlds
    server = await start_server(server_factory, deployment)
    workers = await start_workers(worker_factory, 2)
    order = [f"v{i:03d}" for i in range(versions)]
    async with httpx.AsyncClient() as client, open_store(deployment) as store:
        # one sequential producer per world, all running at once: worlds interleave
        posted = await asyncio.gather(
            *(post_paced(client, server, [(w, v) for v in order], 0.02) for w in worlds)
        )
        assert all(p.status == 201 for per_world in posted for p in per_world)
        n = len(worlds) * versions
        drain_s = await eventually(lambda: _is(store.processed(), n), 60, f"{n} processed keys")
        assert await store.counts() == expected_counts(n)
        assert await store.handling_order() == dict.fromkeys(worlds, order)
        handled = [await metric(client, w.metrics_url, "risk_hub_snapshot_processed_total") for w in workers]
    assert all(handled) and sum(handled) == n, handled
    print(f"\nhandled per worker {handled}; drained {drain_s:.1f}s")


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _at_least(value: Awaitable[int], expected: int) -> bool:
    return await value >= expected


async def _published_all(store: Store, n: int) -> bool:
    counts = await store.counts()
    return counts["outbox"] == counts["published"] == n


async def _handled_at_least(client: httpx.AsyncClient, worker: WorkerProcess, records: int) -> bool:
    processed = await metric(client, worker.metrics_url, "risk_hub_snapshot_processed_total")
    dedupes = await metric(client, worker.metrics_url, "risk_hub_snapshot_dedupe_total")
    return processed + dedupes >= records


async def test_risk_results_are_on_the_api_within_a_second_and_computed_once(
    deployment: Deployment,
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[[], WorkerProcess],
) -> None:
    """`riskhub serve` relays to the broker, a `riskhub worker` computes: a POST's risk is on the
    results API within a second; the same POST again computes nothing."""
    server = await start_server(server_factory, deployment)
    [worker] = await start_workers(worker_factory, 1)
    url = f"{server.url}/risk-hub/worlds/w1/risk/latest"
    async with httpx.AsyncClient() as client:
        posted = await post_paced(client, server, [("w1", "v1")], 0.0)
        assert posted[0].status == 201

        async def done() -> bool:
            return (await client.get(url, headers=WRITE)).json()["status"] == "done"

        elapsed = await eventually(done, 1.0, "risk results of w1/v1")  # polled from the answer on
        for _ in range(2):
            again = await client.post(
                f"{server.url}/risk-hub/worlds/w1/snapshots", content=body("w1", "v1", 0), headers=WRITE
            )
            assert again.status_code == 200
        await asyncio.sleep(1.0)  # time for a duplicate to reach the worker, if one were sent
        runs = await metric(client, worker.metrics_url, "risk_hub_worker_duration_seconds_count")
        assert runs == 2  # one snapshot: extended_validation and risk, once each
    print(f"\nrisk results on the API {elapsed * 1000:.0f} ms after the POST's answer")


async def test_a_live_breach_is_announced_exactly_once_across_a_worker_killed_mid_batch(
    deployment: Deployment,
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[[], WorkerProcess],
    tmp_path: Path,
) -> None:
    """Every live snapshot breaches the hub's var_99 limit. The worker is SIGKILLed mid-stream and
    restarted: each snapshot's risk_limit_breached event is on the topic exactly once, because
    it is an outbox row of the outcome transaction (a redelivered record is deduplicated)."""
    limits = tmp_path / "limits.toml"
    limits.write_text('[[limit]]\nstage = "live"\nmetric = "var_99"\nmax = 0.0001\nseverity = "breach"\n')
    deployment.extra_env["RISKHUB_LIMITS_FILE"] = str(limits)
    n = 60
    server = await start_server(server_factory, deployment)
    [first] = await start_workers(worker_factory, 1)
    live = {**WRITE, "x-stage": "live"}
    async with httpx.AsyncClient() as client, open_store(deployment) as store:

        async def post_all() -> None:
            for i in range(n):
                doc = {**SAMPLE_DOC, "version": f"v{i:03d}", "ttl_sec": 3600}
                doc["provenance"] = {"actor": "gateway", "stage": "live"}
                url = f"{server.url}/risk-hub/worlds/w{i % 4}/snapshots"
                response = await client.post(url, content=json.dumps(doc), headers=live, timeout=15)
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.02)

        async def kill_mid_stream() -> None:
            await eventually(lambda: _at_least(store.processed(), 10), 30, "first worker handling")
            await asyncio.to_thread(first.stop, signal.SIGKILL)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(post_all())
            tasks.create_task(kill_mid_stream())
        killed_at = await store.processed()
        assert 0 < killed_at < n, killed_at
        [second] = await start_workers(worker_factory, 1)
        await eventually(lambda: _is(store.processed(), n), 60, f"{n} processed keys")
        await eventually(lambda: _published_all(store, 2 * n), 20, "snapshot and breach events published")
        breaches = await metric(client, second.metrics_url, "risk_hub_limit_breaches_total")
        assert breaches == n - killed_at  # the restarted worker counted only what it computed
        answer = (await client.get(f"{server.url}/risk-hub/worlds/w0/risk/latest", headers=WRITE)).json()
        assert answer["status"] == "done" and answer["blocking"] is True
        assert [b["metric"] for b in answer["breaches"]] == ["var_99"]
    records = await asyncio.wait_for(read_topic(deployment.kafka.bootstrap, deployment.topic), 20)
    announced = [r for r in records if json.loads(r.value)["type"] == "risk_limit_breached"]
    events = [from_structured(KafkaMessage(dict(r.headers), r.key, r.value), JSONFormat()) for r in announced]
    data: list[dict[str, Any]] = [e.get_data() for e in events]  # type: ignore[misc]
    assert sorted(d["version"] for d in data) == [f"v{i:03d}" for i in range(n)]  # none lost or doubled
    assert {d["metric"] for d in data} == {"var_99"} and len({e.get_id() for e in events}) == n
    assert all(r.key == d["world_id"].encode() for r, d in zip(announced, data, strict=True))
    print(f"\nworker killed after {killed_at} of {n} processed; {len(events)} breach events on the topic")
