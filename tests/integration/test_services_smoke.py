"""Smoke tests: each throwaway real service starts once and works with the real async client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import aioboto3
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiobotocore.config import AioConfig
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, UnknownError
from botocore.exceptions import EndpointConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services import (
    KafkaService,
    PostgresService,
    RedisService,
    S3Service,
    create_topic,
    start_kafka,
    start_postgres,
    start_redis,
    start_s3,
)

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

# Consumer-group timings that work on Tansu. Join time is ~session_timeout_ms / 2.
GROUP_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 6000,
    "max_poll_interval_ms": 30000,
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    svc = start_postgres(tmp_path_factory.mktemp("pg"))
    yield svc
    svc.destroy()


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    svc = start_redis(tmp_path_factory.mktemp("redis"))
    yield svc
    svc.destroy()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    svc = start_kafka(tmp_path_factory.mktemp("kafka"))
    yield svc
    svc.destroy()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    svc = start_s3(tmp_path_factory.mktemp("s3"))
    yield svc
    svc.destroy()


@pytest.fixture
async def producer(kafka: KafkaService) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", request_timeout_ms=3000)
    await prod.start()
    yield prod
    await prod.stop()


# --------------------------------------------------------------------------- postgres


async def test_postgres_select_one(postgres: PostgresService) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "riskhub"
        assert await conn.fetchval("SHOW fsync") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await conn.close()


async def test_postgres_stop_start_keeps_port_and_data(postgres: PostgresService) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    await conn.execute("CREATE TABLE smoke (id int PRIMARY KEY); INSERT INTO smoke VALUES (1)")
    port = postgres.port

    postgres.stop()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("SELECT 1")
    with pytest.raises(OSError):
        await asyncpg.connect(postgres.dsn, timeout=2)

    postgres.start()
    assert postgres.port == port
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM smoke") == 1
    finally:
        await conn.execute("DROP TABLE smoke")
        await conn.close()


# --------------------------------------------------------------------------- redis


async def test_redis_set_get(redis_service: RedisService) -> None:
    client = aioredis.from_url(redis_service.url)
    try:
        assert await client.set("smoke", "v1")
        assert await client.get("smoke") == b"v1"
    finally:
        await client.aclose()


async def test_redis_stop_start_same_port_loses_data(redis_service: RedisService) -> None:
    client = aioredis.from_url(redis_service.url, socket_timeout=1)
    try:
        await client.set("ephemeral", "x")
        redis_service.stop()
        with pytest.raises(RedisConnectionError):
            await client.ping()  # type: ignore[misc]
        redis_service.start()
        assert await client.ping()  # type: ignore[misc]  # redis-py's sync|async union
        assert await client.get("ephemeral") is None  # no persistence
    finally:
        await client.aclose()


async def test_redis_pause_resume_keeps_data(redis_service: RedisService) -> None:
    client = aioredis.from_url(redis_service.url, socket_timeout=0.5)
    try:
        await client.set("kept", "y")
        redis_service.pause()
        try:
            with pytest.raises(RedisTimeoutError):
                await client.get("kept")
        finally:
            redis_service.resume()
        await client.aclose()  # the timed-out connection is in an unknown state
        client = aioredis.from_url(redis_service.url, socket_timeout=2)
        assert await client.get("kept") == b"y"
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- kafka


async def _consume(
    bootstrap: str, topic: str, group: str, count: int, max_wait: float = 30.0
) -> tuple[list[ConsumerRecord[bytes, bytes]], float]:
    """Consume ``count`` records with a fresh group member, commit, and return (records, join_s)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **GROUP_SETTINGS)
    started = time.monotonic()
    await consumer.start()
    try:
        join_s = time.monotonic() - started
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + max_wait
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            records += [rec for recs in batches.values() for rec in recs]
        await consumer.commit()
        return records, join_s
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, topic: str, group: str, partitions: int) -> list[int | None]:
    """Committed offsets of ``group`` for each partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **GROUP_SETTINGS)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


async def test_kafka_topic_produce_consume_group_commit(
    kafka: KafkaService, producer: AIOKafkaProducer
) -> None:
    topic, group = "smoke.events", "smoke-group"
    await create_topic(kafka.bootstrap, topic, partitions=3)
    assert len(await producer.partitions_for(topic)) == 3

    partition_of: dict[bytes, set[int]] = {}
    for i in range(10):
        key = f"world-{i % 4}".encode()
        meta = await producer.send_and_wait(topic, f"v{i}".encode(), key=key)
        partition_of.setdefault(key, set()).add(meta.partition)
    assert all(len(parts) == 1 for parts in partition_of.values())  # keyed -> stable partition

    records, join_s = await _consume(kafka.bootstrap, topic, group, 10)
    print(f"\n[tansu] fresh group join took {join_s:.2f}s (session_timeout_ms=6000)")
    assert sorted(r.value for r in records if r.value) == sorted(f"v{i}".encode() for i in range(10))
    assert join_s < GROUP_SETTINGS["session_timeout_ms"] / 1000
    committed = await _committed(kafka.bootstrap, topic, group, 3)
    assert sum(c or 0 for c in committed) == 10

    for i in range(10, 15):  # a new member of the same group resumes after the commit
        await producer.send_and_wait(topic, f"v{i}".encode(), key=f"world-{i % 4}".encode())
    records, _ = await _consume(kafka.bootstrap, topic, group, 5, max_wait=10)
    assert sorted(r.value for r in records if r.value) == sorted(f"v{i}".encode() for i in range(10, 15))


async def test_kafka_topics_auto_create(kafka: KafkaService, producer: AIOKafkaProducer) -> None:
    meta = await producer.send_and_wait("smoke.auto", b"x")
    assert meta.offset == 0
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        (desc,) = await admin.describe_topics(["smoke.auto"])
    finally:
        await admin.close()
    print(f"\n[tansu] auto-created topic has {len(desc['partitions'])} partitions")


async def test_kafka_pause_resume_keeps_data(kafka: KafkaService, producer: AIOKafkaProducer) -> None:
    topic = "smoke.pause"
    await create_topic(kafka.bootstrap, topic, partitions=1)
    await producer.send_and_wait(topic, b"before", key=b"w")

    kafka.pause()
    try:
        started = time.monotonic()
        with pytest.raises(KafkaError):  # RequestTimedOutError after request_timeout_ms
            await producer.send_and_wait(topic, b"during", key=b"w")
        assert time.monotonic() - started < 10
    finally:
        kafka.resume()

    await producer.send_and_wait(topic, b"after", key=b"w")
    records, _ = await _consume(kafka.bootstrap, topic, "smoke-pause", 2, max_wait=15)
    values = [r.value for r in records]
    assert values[0] == b"before"
    assert b"after" in values  # the timed-out "during" may or may not have been appended


async def test_kafka_tansu_rejects_init_producer_id(kafka: KafkaService) -> None:
    """Characterisation: aiokafka's InitProducerId v0 fails on Tansu, so no idempotence/txns.

    If this starts failing, Tansu/aiokafka gained support and the design may use it.
    """
    for extra in ({"enable_idempotence": True}, {"transactional_id": "smoke-tx"}):
        prod = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, request_timeout_ms=3000, **extra)
        try:
            with pytest.raises(UnknownError):
                await asyncio.wait_for(prod.start(), 15)
        finally:
            await prod.stop()


# --------------------------------------------------------------------------- s3


def _s3_client(s3: S3Service) -> ClientCreatorContext[S3Client]:
    """aioboto3 S3 client context manager with fast failure (no retries, 1 s connect)."""
    config = AioConfig(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    return aioboto3.Session().client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=config,
    )


async def test_s3_put_get(s3: S3Service) -> None:
    s3.create_bucket("riskhub-smoke")
    async with _s3_client(s3) as client:
        await client.put_object(Bucket="riskhub-smoke", Key="a/b.json", Body=b'{"ok":1}')
        obj = await client.get_object(Bucket="riskhub-smoke", Key="a/b.json")
        assert await obj["Body"].read() == b'{"ok":1}'


async def test_s3_stop_start_recreates_buckets(s3: S3Service) -> None:
    s3.create_bucket("riskhub-fault")
    async with _s3_client(s3) as client:
        s3.stop()
        with pytest.raises(EndpointConnectionError):
            await client.put_object(Bucket="riskhub-fault", Key="k", Body=b"x")
        s3.start()
        await client.put_object(Bucket="riskhub-fault", Key="k", Body=b"y")
        obj = await client.get_object(Bucket="riskhub-fault", Key="k")
        assert await obj["Body"].read() == b"y"
