"""ControlBus benchmarks on a real broker (Tansu), each against raw aiokafka in the same run:

* relay: ``OutboxRelay.publish_pending()`` passes over N committed snapshots (in this process,
  on the server CPU) vs an ``AIOKafkaProducer`` sending the same N encoded records;
* worker: ``KafkaWorker.run(max_records=N)`` (decode, dedupe, workers, one store transaction and
  one commit per fetched batch) vs a raw ``getmany`` + ``commit`` loop over the same topic;
* end to end: POST -> relay -> broker -> ``riskhub worker`` process -> ``risk_processed`` row.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import secrets
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import BenchError, free_port, log_tail, percentile
from http_bench import COMMIT_TO_PUBLISH_P50_GOAL_MS, COMMIT_TO_PUBLISH_P99_GOAL_MS
from load import LoadOptions, hub_post, run_wrk_count
from paced import Posted, post_paced
from prometheus_client import Counter
from report import Line, at_least, latency_pair
from server import (
    COMMIT_TO_PUBLISH,
    Server,
    ServerSpec,
    bucket_quantile,
    histogram,
    histogram_delta,
    outbox_backlog,
    riskhub_executable,
    running_process,
    running_server,
    scrape,
    server_env,
    wait_drained,
)
from worker_costs import per_record_costs

from riskhub.bootstrap import build_components, build_kafka_worker, build_store
from riskhub.bus import ReceivedRecord
from riskhub.bus.codec import KafkaRecord, SerializedJson, encode_event
from riskhub.bus.consumer import SnapshotConsumer
from riskhub.bus.kafka import PRODUCER_MAX_BATCH_BYTES, GroupSettings, read_topic
from riskhub.config import Settings
from riskhub.model import OutboxEvent
from riskhub.risk.workers import load_workers

from services import create_topic

PARTITIONS = 3
RELAY_GOAL = 0.5
WORKER_GOAL = 0.5
E2E_P50_GOAL_MS = 250.0  # bench-chosen goals (DESIGN.md sets none)
E2E_P99_GOAL_MS = 1000.0
PHASE_TIMEOUT_S = 300.0
SAME_BYTES = "the relay's bytes, verified"
MAX_BATCH = GroupSettings().max_batch  # records per getmany, as KafkaWorker fetches them


@dataclass(frozen=True)
class KafkaOptions:
    """Sizes and rates of the ControlBus benchmarks."""

    events: int
    rounds: int
    e2e_seconds: float
    e2e_rate: float
    drain_timeout_s: float


@dataclass(frozen=True)
class Throughput:
    """``count`` records in ``seconds`` (a group join before the first record is excluded)."""

    count: int
    seconds: float
    join_s: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def median_rate(runs: Sequence[Throughput]) -> float:
    """Median records/s over rounds."""
    return statistics.median(run.rate for run in runs)


def settings_from_env(env: Mapping[str, str], **overrides: Any) -> Settings:
    """The server's ``RISKHUB_*`` env as Settings (this process's env has none of them)."""
    fields = {k.removeprefix("RISKHUB_").lower(): v for k, v in env.items() if k.startswith("RISKHUB_")}
    return Settings(**{**fields, **overrides})


def alternate(
    round_no: int, first: Callable[[], Throughput], second: Callable[[], Throughput]
) -> tuple[Throughput, Throughput]:
    """Run both, ``first`` first in odd rounds and last in even rounds (the pair order alternates);
    returns (first's result, second's result)."""
    if round_no % 2:
        a = first()
        return a, second()
    b = second()
    return first(), b


# --------------------------------------------------------------------------- relay


def encoded(event: OutboxEvent, source: str) -> KafkaRecord:
    """The record the relay sends for an outbox event (same call as ``OutboxRelay._record``;
    ``differing_records`` checks the bytes against what the relay really sent)."""
    return encode_event(
        event_id=event.event_id,
        event_type=event.event_type,
        source=source,
        data=SerializedJson(event.data),
        key=event.world_id,
        time=event.created_at,
        correlation_id=event.correlation_id,
    )


async def pending_records(settings: Settings) -> list[KafkaRecord]:
    """Every pending outbox event, encoded, without marking anything (the claim is released)."""
    store = build_store(settings)
    await store.open()
    try:
        backlog = await store.outbox_backlog()
        async with store.claim_outbox(max(backlog.pending, 1)) as batch:
            events = list(batch.events)
    finally:
        await store.close()
    return [encoded(event, settings.event_source) for event in events]


async def relay_until_empty(settings: Settings) -> Throughput:
    """Time ``publish_pending()`` passes until the outbox is empty (producer connected first)."""
    parts = build_components(settings)
    await parts.start(background=False)
    try:
        await parts.publisher.ping()
        started = time.perf_counter()
        published, passes = 0, []
        while True:
            pass_started = time.perf_counter()
            sent, failed = await parts.relay.publish_pending()
            if failed:
                raise BenchError(f"relay: {failed} publish failures")
            if sent == 0:
                break
            published += sent
            passes.append(time.perf_counter() - pass_started)
        elapsed = time.perf_counter() - started
        left = (await parts.store.outbox_backlog()).pending
    finally:
        await parts.stop()
    if left:
        raise BenchError(f"relay stopped with {left} events pending")
    return Throughput(published, elapsed, note=pass_note(passes, settings.relay_batch_size))


def pass_note(passes: Sequence[float], batch: int) -> str:
    """Median duration of the first and the last three relay passes: does a pass get cheaper as
    the backlog shrinks?"""
    if len(passes) < 2:
        return ""
    first, last = statistics.median(passes[:3]) * 1000, statistics.median(passes[-4:-1] or passes[-1:]) * 1000
    return f"{len(passes)} passes of <= {batch}: first {first:.0f} ms, last {last:.0f} ms each"


async def raw_produce(brokers: str, topic: str, records: Sequence[KafkaRecord], batch: int) -> Throughput:
    """aiokafka alone: the same records, acks=all, linger_ms=1, awaiting every ``batch`` sends."""
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers,
        acks="all",
        enable_idempotence=False,
        linger_ms=1,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,  # the relay's own producer setting
        client_id="bench-raw",
    )
    await producer.start()
    try:
        await producer.client.fetch_all_metadata()
        started = time.perf_counter()
        for offset in range(0, len(records), batch):
            futures = [
                await producer.send(topic, value=r.value, key=r.key, headers=r.headers)
                for r in records[offset : offset + batch]
            ]
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return Throughput(len(records), elapsed)


RecordKey = tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]


async def topic_records(brokers: str, topic: str) -> list[RecordKey]:
    """Key, value and headers of every record of a topic (read without a consumer group)."""
    records = await asyncio.wait_for(read_topic(brokers, topic), PHASE_TIMEOUT_S)
    return [(r.key, r.value, tuple(r.headers)) for r in records]


def differing_records(brokers: str, topic: str, records: Sequence[KafkaRecord]) -> int:
    """Records the relay sent to ``topic`` but the raw producer did not, or the other way round
    (key, value and headers compared byte for byte): 0 when both sent the same bytes."""
    sent = collections.Counter(asyncio.run(topic_records(brokers, topic)))
    ours = collections.Counter((r.key, r.value, tuple(r.headers)) for r in records)
    return (sent - ours).total() + (ours - sent).total()


def fill_outbox(server: Server, body_file: Path, load: LoadOptions, events: int) -> int:
    """POST ``events`` new snapshots to a server whose relay is off; returns the outbox size once
    it stopped growing (wrk's last in-flight requests are stored after wrk stopped counting)."""
    result = run_wrk_count(hub_post(body_file), server, load, events, max_s=600)
    accepted = result.statuses.get(201, 0)
    previous, current = -1, outbox_backlog(server)
    while current != previous:
        time.sleep(0.3)
        previous, current = current, outbox_backlog(server)
    if current < accepted:
        raise BenchError(f"outbox holds {current} events after {accepted} POSTs")
    return current


def relay_round(
    round_no: int, server: Server, body_file: Path, load: LoadOptions, settings: Settings, events: int
) -> tuple[Throughput, Throughput, str]:
    """Fill the outbox with ``events`` snapshots, then (order alternating) relay them to a fresh
    topic and raw-produce the same encoded records to another; returns the relay's topic."""
    stored = fill_outbox(server, body_file, load, events)
    tag = secrets.token_hex(3)
    relay_topic, raw_topic = f"bench-relay-{tag}", f"bench-raw-{tag}"
    brokers = settings.controlbus_brokers or ""
    for topic in (relay_topic, raw_topic):
        asyncio.run(create_topic(brokers, topic, PARTITIONS))
    records = asyncio.run(pending_records(settings))
    if len(records) != stored:
        raise BenchError(f"read {len(records)} pending events, the outbox holds {stored}")
    relay_settings = settings.model_copy(update={"controlbus_topic": relay_topic})
    relay, raw = alternate(
        round_no,
        lambda: asyncio.run(relay_until_empty(relay_settings)),
        lambda: asyncio.run(raw_produce(brokers, raw_topic, records, settings.relay_batch_size)),
    )
    differ = differing_records(brokers, relay_topic, records)
    note = SAME_BYTES if not differ else f"WARNING: {differ} records differ from the relay's"
    return relay, dataclasses.replace(raw, note=note), relay_topic


def bench_relay(
    config: str, spec: ServerSpec, workdir: Path, body_file: Path, load: LoadOptions, opts: KafkaOptions
) -> tuple[list[Line], list[tuple[str, int]]]:
    """Relay throughput vs raw aiokafka, per round on a freshly filled outbox (a server with its
    relay off takes the POSTs). Returns the line and each round's relay topic and event count."""
    relays: list[Throughput] = []
    raws: list[Throughput] = []
    topics: list[tuple[str, int]] = []
    with running_server(spec.with_env(RISKHUB_RUN_RELAY="false"), workdir) as server:
        settings = settings_from_env(server.env, run_relay=False)
        for round_no in range(1, opts.rounds + 1):
            relay, raw, topic = relay_round(round_no, server, body_file, load, settings, opts.events)
            relays.append(relay)
            raws.append(raw)
            topics.append((topic, relay.count))
            print(
                f"  relay round {round_no}/{opts.rounds}: OutboxRelay {relay.count} events in "
                f"{relay.seconds:.2f} s = {relay.rate:.0f}/s ({relay.note}) | raw aiokafka {raw.count} in "
                f"{raw.seconds:.2f} s = {raw.rate:.0f}/s ({raw.note}) | ratio {relay.rate / raw.rate:.2f}",
                flush=True,
            )
    same = "verified byte for byte" if all(r.note == SAME_BYTES for r in raws) else "NOT all identical"
    details = (
        f"OutboxRelay.publish_pending() until empty {median_rate(relays):.0f} ev/s vs raw AIOKafkaProducer "
        f"{median_rate(raws):.0f} ev/s (the relay's {'/'.join(str(r.count) for r in relays)} records, "
        f"{same}; acks=all, linger_ms=1, awaited per {settings.relay_batch_size}); {PARTITIONS} partitions"
    )
    ratio = median_rate(relays) / median_rate(raws)
    return [at_least(config, "relay/raw aiokafka producer", ratio, RELAY_GOAL, details)], topics


# --------------------------------------------------------------------------- worker


class TimedConsumer:
    """``SnapshotConsumer`` with the time of its first call and of the end of its last one."""

    def __init__(self, inner: SnapshotConsumer) -> None:
        self._inner = inner
        self.first: float | None = None
        self.last: float | None = None
        self.sample: ReceivedRecord | None = None

    async def handle_batch(self, records: Sequence[ReceivedRecord]) -> list[bool]:
        """Delegate, timing."""
        if self.first is None:
            self.first = time.perf_counter()
            self.sample = records[0]
        handled = await self._inner.handle_batch(records)
        self.last = time.perf_counter()
        return handled


def counter_total(counter: Counter) -> float:
    """Sum of a labelled counter's ``_total`` samples."""
    samples = (s for metric in counter.collect() for s in metric.samples if s.name.endswith("_total"))
    return float(sum(s.value for s in samples))


async def worker_run(settings: Settings, records: int) -> Throughput:
    """``KafkaWorker.run(max_records=N)`` over a fresh group; the group join is timed apart."""
    parts = build_components(settings)
    await parts.start(background=False)
    timed = TimedConsumer(parts.consumer)
    worker = build_kafka_worker(dataclasses.replace(parts, consumer=cast(SnapshotConsumer, timed)))
    try:
        started = time.perf_counter()
        await asyncio.wait_for(worker.run(max_records=records), PHASE_TIMEOUT_S)
        processed = counter_total(parts.metrics.processed)
    finally:
        await parts.stop()
    if timed.first is None or timed.last is None or timed.sample is None or processed != records:
        raise BenchError(f"worker handled {worker.handled}, processed {processed:.0f} of {records} records")
    decode_us, workers_us = await per_record_costs(timed.sample, load_workers(settings.workers))
    note = f"{decode_us:.0f}/{workers_us:.0f}"
    return Throughput(worker.handled, timed.last - timed.first, timed.first - started, note)


async def raw_consume(settings: Settings, topic: str, group: str, records: int) -> Throughput:
    """aiokafka alone: ``getmany`` + ``commit`` per batch until ``records`` were read."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.controlbus_brokers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
    )
    started = time.perf_counter()
    await consumer.start()
    try:
        first, seen = 0.0, 0
        while seen < records:
            if time.perf_counter() - started > PHASE_TIMEOUT_S:
                raise BenchError(f"raw consumer read {seen} of {records} records")
            batches = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            if batches and not seen:
                first = time.perf_counter()
            seen += sum(len(batch) for batch in batches.values())
            if batches:
                await consumer.commit({tp: batch[-1].offset + 1 for tp, batch in batches.items()})
        ended = time.perf_counter()
    finally:
        await consumer.stop()
    return Throughput(seen, ended - first, first - started)


def worker_round(
    round_no: int, env: Mapping[str, str], workdir: Path, topic: str, events: int
) -> tuple[Throughput, Throughput]:
    """The worker and the raw loop over ``topic``, each in its own fresh group (order alternating)."""
    tag = secrets.token_hex(3)
    settings = settings_from_env(
        env,
        controlbus_topic=topic,
        consumer_group=f"bench-worker-{tag}",
        run_relay=False,
        data_dir=workdir / f"worker-{tag}",
    )
    return alternate(
        round_no,
        lambda: asyncio.run(worker_run(settings, events)),
        lambda: asyncio.run(raw_consume(settings, topic, f"bench-raw-{tag}", events)),
    )


def bench_worker(
    config: str, env: Mapping[str, str], workdir: Path, topics: Sequence[tuple[str, int]]
) -> list[Line]:
    """Worker vs raw consume+commit, one relay topic per round, each side with a fresh group."""
    workers, raws = [], []
    for round_no, (topic, events) in enumerate(topics, start=1):
        worker, raw = worker_round(round_no, env, workdir, topic, events)
        workers.append(worker)
        raws.append(raw)
        print(
            f"  worker round {round_no}/{len(topics)}: KafkaWorker {worker.count} records in "
            f"{worker.seconds:.2f} s = {worker.rate:.0f}/s (join {worker.join_s:.1f} s) | raw consume+commit "
            f"{raw.rate:.0f}/s (join {raw.join_s:.1f} s) | ratio {worker.rate / raw.rate:.2f}",
            flush=True,
        )
    costs = [[float(us) for us in run.note.split("/")] for run in workers]  # "decode/workers" in us
    decode_us, workers_us = (statistics.median(run[i] for run in costs) for i in (0, 1))
    details = (
        f"KafkaWorker.run (decode, dedupe, 3 risk workers, 1 outcome transaction per partition batch) "
        f"{median_rate(workers):.0f} rec/s vs raw getmany+commit {median_rate(raws):.0f} rec/s; "
        "first record to last, group join excluded. Per record: raw loop "
        f"{1e6 / median_rate(raws):.0f} us in all, worker {1e6 / median_rate(workers):.0f} us, of which "
        f"decoding the 14 KB CloudEvent {decode_us:.0f} us and the risk workers {workers_us:.0f} us "
        "(in-process medians on one record)"
    )
    ratio = median_rate(workers) / median_rate(raws)
    return [at_least(config, "worker/raw aiokafka consumer", ratio, WORKER_GOAL, details)]


# --------------------------------------------------------------------------- end to end


def wait_assigned(process: Any, log: Path, timeout_s: float = 60.0) -> float:
    """Seconds until a ``riskhub worker`` logs a non-empty partition assignment."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise BenchError(f"riskhub worker exited with {process.returncode}:\n{log_tail(log)}")
        text = log.read_text(errors="replace") if log.exists() else ""
        if "assigned partitions: ['" in text:
            return time.monotonic() - started
        time.sleep(0.1)
    raise BenchError(f"riskhub worker got no partitions in {timeout_s:.0f} s:\n{log_tail(log)}")


async def processed_at(dsn: str, keys: Sequence[str], timeout_s: float) -> dict[str, float]:
    """``risk_processed.processed_at`` (epoch s) of the keys with outcome ``processed``, polling
    until all are there or ``timeout_s`` passed."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        while True:
            rows = await conn.fetch(
                "SELECT dedupe_key, processed_at FROM risk_processed"
                " WHERE outcome = 'processed' AND dedupe_key = ANY($1::text[])",
                list(keys),
            )
            if len(rows) == len(keys) or time.monotonic() - started > timeout_s:
                return {row["dedupe_key"]: row["processed_at"].timestamp() for row in rows}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def e2e_lines(
    config: str, posted: Sequence[Posted], handled: Mapping[str, float], context: str
) -> list[Line]:
    """p50/p99 of handled_at - posted_at (exact percentiles), and a line if any was not handled."""
    latencies = [(handled[p.dedupe_key] - p.posted_at) * 1000 for p in posted if p.dedupe_key in handled]
    values = (percentile(latencies, 0.5), percentile(latencies, 0.99))
    details = f"{context}; exact, handled_at = risk_processed.processed_at, posted_at = request sent"
    lines = latency_pair(config, "e2e POST->handled", values, (E2E_P50_GOAL_MS, E2E_P99_GOAL_MS), details)
    if len(handled) < len(posted):
        lines.append(
            Line(
                config, "e2e handled", f"{len(handled)}/{len(posted)}", "all", False, "within the drain bound"
            )
        )
    return lines


def bench_e2e(config: str, spec: ServerSpec, workdir: Path, payload: str, opts: KafkaOptions) -> list[Line]:
    """POST at a modest rate to a server (relay on) while a ``riskhub worker`` process consumes."""
    tag = secrets.token_hex(3)
    env = {
        **spec.env,
        "RISKHUB_CONTROLBUS_TOPIC": f"bench-e2e-{tag}",
        "RISKHUB_CONSUMER_GROUP": f"bench-e2e-{tag}",
    }
    asyncio.run(create_topic(env["RISKHUB_CONTROLBUS_BROKERS"], env["RISKHUB_CONTROLBUS_TOPIC"], PARTITIONS))
    data_dir = workdir / f"worker-{tag}"
    data_dir.mkdir()
    log = workdir / f"worker-{tag}.log"
    argv = [riskhub_executable(), "worker", "--metrics-port", str(free_port())]
    count = round(opts.e2e_seconds * opts.e2e_rate)
    with running_process(argv, server_env(env, data_dir), log, workdir) as worker:
        join_s = wait_assigned(worker, log)
        with running_server(ServerSpec(spec.argv, {**env, "RISKHUB_RUN_RELAY": "true"}), workdir) as server:
            before = histogram(scrape(server), COMMIT_TO_PUBLISH)
            posted = post_paced(server.url, payload, count, opts.e2e_rate, f"e2e-{tag}")
            keys = [p.dedupe_key for p in posted]
            handled = asyncio.run(processed_at(env["RISKHUB_DATABASE_URL"], keys, opts.drain_timeout_s))
            wait_drained(server, opts.drain_timeout_s)
            delta = histogram_delta(before, histogram(scrape(server), COMMIT_TO_PUBLISH))
    print(f"  e2e: worker joined in {join_s:.1f} s; {len(handled)}/{count} handled")
    context = (
        f"{count} POSTs at {opts.e2e_rate:g}/s -> relay -> broker ({PARTITIONS} partitions) -> riskhub worker"
    )
    publish = tuple(bucket_quantile(delta, q) * 1000 for q in (0.5, 0.99))
    publish_lines = latency_pair(
        config,
        "commit->publish(kafka ack)",
        (publish[0], publish[1]),
        (COMMIT_TO_PUBLISH_P50_GOAL_MS, COMMIT_TO_PUBLISH_P99_GOAL_MS),
        f"{count} POSTs at {opts.e2e_rate:g}/s; bucket-interpolated from the histogram",
    )
    return e2e_lines(config, posted, handled, context) + publish_lines


def bench_kafka(
    config: str,
    spec: ServerSpec,
    workdir: Path,
    payload: str,
    body_file: Path,
    load: LoadOptions,
    opts: KafkaOptions,
    only: Sequence[str],
) -> list[Line]:
    """The selected ControlBus benchmarks (the worker one consumes the relay's topics)."""
    lines: list[Line] = []
    if "relay" in only or "worker" in only:
        relay_lines, topics = bench_relay(config, spec, workdir, body_file, load, opts)
        lines += relay_lines
        if "worker" in only:
            lines += bench_worker(config, spec.env, workdir, topics)
    if "e2e" in only:
        lines += bench_e2e(config, spec, workdir, payload, opts)
    return lines
