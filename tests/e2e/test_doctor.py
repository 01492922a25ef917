"""`riskhub doctor` and `riskhub topics create` against the suite's real services: PostgreSQL,
Redis, S3 (moto) and the Kafka-protocol broker (Tansu), with a real `riskhub worker` in the group.

A correct setup is all green; each fault turns its own line red (the others stay green) with
the right exit code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from live_hub import operator_env, run_riskhub, start_worker, stop_worker
from riskhub.config import Settings
from riskhub.ops.checklist import Report, State
from riskhub.ops.doctor import run_doctor
from riskhub.store.postgres import PostgresStore

from conftest import Production
from services import KafkaService, free_port, start_redis

WRITER = "gateway-token-0123456789abcdef0123456789"
READER = "monitor-token-0123456789abcdef0123456789"
LINES = (
    "database",
    "schema",
    "outbox",
    "cache",
    "blob_store",
    "brokers",
    "topic",
    "dlq_topic",
    "consumer_group",
    "tokens",
    "network_allowlist",
)


@dataclass(frozen=True)
class Bus:
    """A topic pair made by `riskhub topics create`, and a group with a live `riskhub worker`."""

    brokers: str
    topic: str
    group: str

    def settings(self) -> dict[str, Any]:
        return {
            "controlbus_brokers": self.brokers,
            "controlbus_topic": self.topic,
            "dlq_topic": f"{self.topic}.dlq",
            "consumer_group": self.group,
        }


def as_env(settings: dict[str, Any]) -> dict[str, str]:
    return {f"RISKHUB_{key.upper()}": str(value) for key, value in settings.items()}


@pytest.fixture(scope="module")
def bus(kafka: KafkaService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """Topics created by the command operators run, and one worker joined to a fresh group."""
    made = Bus(kafka.bootstrap, f"doctor-{uuid.uuid4().hex[:8]}", f"doctor-group-{uuid.uuid4().hex[:8]}")
    env = operator_env(**as_env(made.settings()))
    created = run_riskhub("topics", "create", "--partitions", "2", env=env)
    assert created.returncode == 0, created.stderr
    root = tmp_path_factory.mktemp("doctor-worker")
    worker_env = {**env, "RISKHUB_DATA_DIR": str(root), "RISKHUB_CONSUMER_SESSION_TIMEOUT_MS": "6000"}
    worker = start_worker(worker_env, root / "worker.log")
    try:
        yield made
    finally:
        stop_worker(worker)


@pytest.fixture
async def correct(production: Production, bus: Bus, tmp_path: Path) -> dict[str, Any]:
    """Settings of a deployment done by the runbook: migrated schema, Redis, S3, topics, a worker,
    strong tokens in private files, an allowlist."""
    store = PostgresStore(production.postgres.dsn, schema=production.namespace)
    await store.open()  # what `riskhub migrate` and `serve` do
    await store.close()
    tokens, read_tokens = tmp_path / "tokens", tmp_path / "read-tokens"
    for path, token in ((tokens, WRITER), (read_tokens, READER)):
        path.write_text(f"# rotated 2026-12-01\n{token}\n")
        path.chmod(0o600)
    return {
        **production.settings(),
        **bus.settings(),
        "tokens_file": tokens,
        "read_tokens_file": read_tokens,
        "allowed_networks": "127.0.0.0/8",
    }


async def doctor(settings: dict[str, Any]) -> Report:
    return await run_doctor(Settings(**settings), timeout_s=10)


def states(report: Report) -> dict[str, State]:
    return {finding.line: finding.state for finding in report.findings}


def detail(report: Report, line: str) -> str:
    return next(f.detail for f in report.findings if f.line == line)


def all_ok_but(**changed: State) -> dict[str, State]:
    return {line: changed.get(line, State.OK) for line in LINES}


def test_a_correct_setup_is_all_green(correct: dict[str, Any], bus: Bus) -> None:
    result = run_riskhub("doctor", env=operator_env(**as_env(correct)))
    assert result.returncode == 0, result.stdout
    assert "riskhub doctor: OK (11 ok, 0 warn, 0 fail)" in result.stdout
    document = json.loads(run_riskhub("doctor", "--json", env=operator_env(**as_env(correct))).stdout)
    assert document["state"] == "ok" and document["exit_code"] == 0
    lines = {line["line"]: line["detail"] for line in document["lines"]}
    assert list(lines) == list(LINES)
    assert (
        "2 partitions, replication 1, retention.ms 604800000 (7d), max.message.bytes 1008192"
        in lines["topic"]
    )
    assert "max.message.bytes 1016384, cleanup.policy delete" in lines["dlq_topic"]
    assert f"{bus.group}: 1 live member(s)" in lines["consumer_group"] and "lag 0" in lines["consumer_group"]
    assert "written, read back and deleted" in lines["blob_store"]
    assert WRITER not in result.stdout and READER not in result.stdout


async def test_a_missing_topic_fails_the_topic_line(correct: dict[str, Any]) -> None:
    report = await doctor({**correct, "controlbus_topic": f"never-created-{uuid.uuid4().hex[:8]}"})
    assert states(report) == all_ok_but(topic=State.FAIL)
    assert "does not exist: run `riskhub topics create`" in detail(report, "topic")
    assert report.exit_code == 2


async def test_an_unmigrated_database_fails_the_schema_line(
    correct: dict[str, Any], production: Production
) -> None:
    fresh = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(production.postgres.dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {fresh}")
    finally:
        await conn.close()
    report = await doctor({**correct, "database_schema": fresh})
    assert states(report) == all_ok_but(schema=State.FAIL, outbox=State.WARN)
    assert "at migration 0 of " in detail(report, "schema") and "riskhub migrate" in detail(report, "schema")
    assert report.exit_code == 2


async def test_a_stopped_redis_fails_the_cache_line(correct: dict[str, Any], tmp_path: Path) -> None:
    redis = start_redis(tmp_path)
    redis.stop()
    try:
        report = await doctor({**correct, "redis_url": redis.url})
    finally:
        redis.destroy()
    assert states(report) == all_ok_but(cache=State.FAIL)
    assert f"{redis.url} does not answer" in detail(report, "cache")
    assert report.exit_code == 2


async def test_postgres_without_redis_fails_the_cache_line(correct: dict[str, Any]) -> None:
    report = await doctor({k: v for k, v in correct.items() if k != "redis_url"})
    assert states(report) == all_ok_but(cache=State.FAIL)
    assert "RISKHUB_REDIS_URL is not set: required with PostgreSQL" in detail(report, "cache")


async def test_an_unwritable_bucket_fails_the_blob_store_line(correct: dict[str, Any]) -> None:
    report = await doctor({**correct, "blob_url": "s3://no-such-bucket/prod"})
    assert states(report) == all_ok_but(blob_store=State.FAIL)
    assert "s3://no-such-bucket/prod: cannot write a probe object" in detail(report, "blob_store")
    assert "NoSuchBucket" in detail(report, "blob_store")
    assert report.exit_code == 2


async def test_a_dead_consumer_group_fails_its_line_and_shows_its_lag(
    correct: dict[str, Any], bus: Bus
) -> None:
    """A group that committed once (its workers are gone since) while events kept coming."""
    dead = f"dead-group-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bus.brokers)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(bus.topic, b"{}", partition=0)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(bootstrap_servers=bus.brokers, group_id=dead, enable_auto_commit=False)
    await committer.start()
    try:
        partition = TopicPartition(bus.topic, 0)
        committer.assign([partition])
        end = (await committer.end_offsets([partition]))[partition]
        await committer.commit({partition: end - 2})
    finally:
        await committer.stop()
    report = await doctor({**correct, "consumer_group": dead})
    assert states(report) == all_ok_but(consumer_group=State.FAIL)
    assert f"{dead}: 0 live member(s), state Empty, lag 2 (p0 2, p1 0)" in detail(report, "consumer_group")
    assert "start `riskhub worker`" in detail(report, "consumer_group")
    assert report.exit_code == 2


async def test_unreachable_brokers_fail_their_line_and_leave_the_bus_lines_unchecked(
    correct: dict[str, Any],
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    report = await doctor({**correct, "controlbus_brokers": closed})
    expected = all_ok_but(
        brokers=State.FAIL, topic=State.WARN, dlq_topic=State.WARN, consumer_group=State.WARN
    )
    assert states(report) == expected
    assert detail(report, "brokers").startswith(f"{closed} do not answer: kafka at {closed}")
    assert detail(report, "topic") == "not checked: brokers unreachable"
    assert report.exit_code == 2


@pytest.mark.parametrize(
    ("tokens", "read_tokens", "expected"),
    [
        ("short-token", READER, "has 11 characters, fewer than 32"),
        (WRITER, WRITER, "is both a read-write and a read-only token"),
    ],
    ids=["short", "read-equals-write"],
)
async def test_a_weak_token_fails_the_tokens_line(
    correct: dict[str, Any], tmp_path: Path, tokens: str, read_tokens: str, expected: str
) -> None:
    (tmp_path / "tokens").write_text(f"{tokens}\n")
    (tmp_path / "read-tokens").write_text(f"{read_tokens}\n")
    report = await doctor(correct)
    assert states(report) == all_ok_but(tokens=State.FAIL)
    assert expected in detail(report, "tokens")
    assert tokens not in detail(report, "tokens") and read_tokens not in detail(report, "tokens")
    assert report.exit_code == 2


async def test_tokens_that_serve_would_generate_fail_the_tokens_line(correct: dict[str, Any]) -> None:
    unset = {k: v for k, v in correct.items() if k not in ("tokens_file", "read_tokens_file")}
    report = await doctor(unset)
    assert states(report) == all_ok_but(tokens=State.FAIL)
    assert "`serve` would generate a token at every start" in detail(report, "tokens")


async def test_warnings_exit_1(correct: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "tokens").chmod(0o644)
    report = await doctor({**correct, "allowed_networks": "", "dlq_topic": None})
    assert states(report) == all_ok_but(tokens=State.WARN, network_allowlist=State.WARN, dlq_topic=State.WARN)
    assert "mode 644): chmod 600" in detail(report, "tokens")
    assert "RISKHUB_DLQ_TOPIC is not set" in detail(report, "dlq_topic")
    assert report.exit_code == 1


def test_the_doctor_exits_2_on_failures_and_prints_json(correct: dict[str, Any]) -> None:
    env = operator_env(**as_env({**correct, "blob_url": "s3://no-such-bucket/prod"}))
    result = run_riskhub("doctor", "--json", env=env)
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["state"] == "fail"
    assert [line["line"] for line in document["lines"] if line["state"] == "fail"] == ["blob_store"]


def test_no_secret_reaches_the_doctors_output(correct: dict[str, Any]) -> None:
    env = operator_env(**as_env({**correct, "redis_url": "redis://:hunter2-secret@127.0.0.1:1/0"}))
    result = run_riskhub("doctor", "--json", env=env)
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "redis://:***@127.0.0.1:1/0 does not answer" in result.stdout
