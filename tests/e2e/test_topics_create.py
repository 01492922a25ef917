"""`riskhub topics create` against the Kafka-protocol broker of the suite (Tansu): both topics
made with what the hub needs, a second run changes nothing and says so, a topic made by someone
else is checked and left alone."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from live_hub import operator_env, run_riskhub

from services import KafkaService


def test_topics_create_makes_both_topics_then_changes_nothing(kafka: KafkaService) -> None:
    topic = f"created-{uuid.uuid4().hex[:8]}"
    env = operator_env(RISKHUB_CONTROLBUS_BROKERS=kafka.bootstrap, RISKHUB_CONTROLBUS_TOPIC=topic)
    first = run_riskhub("topics", "create", "--partitions", "4", "--retention", "3d", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"{topic}: created (4 partitions, replication 1, retention.ms 259200000 (3d),"
        " max.message.bytes 1008192, cleanup.policy delete)",
        f"{topic}.dlq: created (4 partitions, replication 1, retention.ms 259200000 (3d),"
        " max.message.bytes 1016384, cleanup.policy delete)",
        f"created {topic}, {topic}.dlq",
    ]
    again = run_riskhub("topics", "create", "--partitions", "6", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"{topic}: exists, left unchanged (4 partitions, replication 1, retention.ms 259200000 (3d),"
        " max.message.bytes 1008192, cleanup.policy delete)",
        "  note: asked for partitions 6, the topic has 4 (left unchanged)",
        "  note: asked for retention.ms 604800000 (7d), the topic has 259200000 (3d) (left unchanged)",
        f"{topic}.dlq: exists, left unchanged (4 partitions, replication 1, retention.ms 259200000 (3d),"
        " max.message.bytes 1016384, cleanup.policy delete)",
        "  note: asked for partitions 6, the topic has 4 (left unchanged)",
        "  note: asked for retention.ms 604800000 (7d), the topic has 259200000 (3d) (left unchanged)",
        "nothing changed: every topic already exists",
    ]


def test_topics_create_checks_a_topic_it_did_not_make(kafka: KafkaService) -> None:
    """A topic auto-created by the broker (Tansu reports none of its configs): left as it is,
    and the run says what it could not check."""
    topic = f"auto-{uuid.uuid4().hex[:8]}"

    async def auto_create() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"{}")
        finally:
            await producer.stop()

    asyncio.run(auto_create())
    env = operator_env(RISKHUB_CONTROLBUS_BROKERS=kafka.bootstrap, RISKHUB_CONTROLBUS_TOPIC=topic)
    result = run_riskhub("topics", "create", env=env)
    assert result.returncode == 1, result.stdout
    assert f"{topic}: exists, left unchanged (" in result.stdout
    assert "the broker did not report retention.ms, max.message.bytes, cleanup.policy" in result.stdout
    assert f"{topic}.dlq: created" in result.stdout


def test_topics_create_without_brokers_is_a_one_line_error() -> None:
    env = {k: v for k, v in operator_env().items() if not k.startswith("RISKHUB_")}
    result = run_riskhub("topics", "create", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: RISKHUB_CONTROLBUS_BROKERS is required: the in-process bus has no topics to create"
    )
