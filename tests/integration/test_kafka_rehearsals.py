"""The queue standards' required rehearsal scenarios, against the real broker (Tansu):
duplicates are deduplicated and counted, expired snapshots dropped and counted, failures retried
with backoff then succeed or go to the DLQ, and stages stay separate labels."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

import flaky_workers
from riskhub.bootstrap import build_kafka_worker
from riskhub.bus.dlq import read_dlq, replay
from riskhub.bus.kafka import read_topic
from riskhub.events import event_id_for
from riskhub.ops.backfill import reemit_event

from conftest import FakeClock, HubClient, sample_snapshot
from services import KafkaService, create_topic


@contextlib.asynccontextmanager
async def kafka_hub(
    make_hub: Callable[..., Any], kafka: KafkaService, **overrides: Any
) -> AsyncIterator[HubClient]:
    """A hub on a fresh topic (3 partitions) and DLQ topic, with a fresh consumer group."""
    topic = f"policy-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka.bootstrap, topic, 3)
    await create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    settings = {
        "controlbus_brokers": kafka.bootstrap,
        "controlbus_topic": topic,
        "dlq_topic": f"{topic}.dlq",
        "consumer_group": f"group-{uuid.uuid4().hex[:8]}",
        "consumer_session_timeout_ms": 2000,
        "consumer_heartbeat_interval_ms": 300,
        **overrides,
    }
    async with make_hub(**settings) as hub:
        yield hub


async def consume(hub: HubClient, records: int) -> None:
    """Run the consumer group until it has handled ``records`` records."""
    await asyncio.wait_for(build_kafka_worker(hub.parts).run(max_records=records), timeout=30)


async def post_and_publish(hub: HubClient, world: str, body: dict[str, Any], **kwargs: Any) -> None:
    response = await hub.post(world, body, **kwargs)
    assert response.status_code == 201, response.text
    await hub.drain()


async def test_duplicate_event_is_counted_and_runs_the_workers_once(
    make_hub: Callable[..., Any], kafka: KafkaService
) -> None:
    async with kafka_hub(make_hub, kafka) as hub:
        await post_and_publish(hub, "w1", sample_snapshot(ttl_sec=600))
        stored = await hub.parts.store.get_snapshot("w1", "v1")
        assert stored is not None
        await hub.parts.store.enqueue_event(reemit_event(stored))  # the same event again
        await hub.drain()
        await consume(hub, 2)
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 1
        assert hub.metric("risk_hub_snapshot_dedupe_total", world_id="w1", stage="paper") == 1
        key = f"w1|v1|{stored.hash}|gateway|paper"
        assert [r.worker for r in await hub.parts.store.worker_results(key)] == [
            "extended_validation",
            "risk",
        ]


async def test_expired_snapshot_is_dropped_and_counted(
    make_hub: Callable[..., Any], kafka: KafkaService
) -> None:
    clock = FakeClock()
    async with kafka_hub(make_hub, kafka, clock=clock) as hub:
        await post_and_publish(hub, "w1", sample_snapshot(ttl_sec=5))
        clock.advance(6)  # the event is consumed after the snapshot's TTL
        await consume(hub, 1)
        assert hub.metric("risk_hub_snapshot_expired_total", world_id="w1", stage="paper") == 1
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 0


async def test_failure_is_retried_with_growing_backoff_then_succeeds(
    make_hub: Callable[..., Any], kafka: KafkaService
) -> None:
    flaky_workers.FAILURES["remaining"] = 2
    async with kafka_hub(make_hub, kafka, workers=["flaky_workers:FLAKY"], retry_backoff_sec=0.5) as hub:
        slept: list[float] = []

        async def record_sleep(seconds: float) -> None:
            slept.append(seconds)

        hub.parts.consumer.sleep = record_sleep
        await post_and_publish(hub, "w1", sample_snapshot(ttl_sec=600))
        await consume(hub, 1)
        assert slept == [0.5, 1.0]  # retry_backoff_sec * 2^(n-1)
        assert hub.metric("risk_hub_snapshot_retry_total", world_id="w1", stage="paper") == 2
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 1
        assert hub.metric("risk_hub_snapshot_failed_total", world_id="w1", stage="paper") == 0


async def test_three_failures_go_to_the_dlq_and_replay_runs_the_workers_again(
    make_hub: Callable[..., Any], kafka: KafkaService
) -> None:
    flaky_workers.FAILURES["remaining"] = 3
    async with kafka_hub(make_hub, kafka, workers=["flaky_workers:FLAKY"]) as hub:
        settings = hub.parts.settings
        await post_and_publish(
            hub, "w1", sample_snapshot(ttl_sec=600), headers={"x-correlation-id": "run-42"}
        )
        await consume(hub, 1)
        assert hub.metric("risk_hub_snapshot_retry_total", world_id="w1", stage="paper") == 2
        assert hub.metric("risk_hub_snapshot_failed_total", world_id="w1", stage="paper") == 1
        assert hub.metric("risk_hub_snapshot_dlq_total", world_id="w1", stage="paper") == 1
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 0

        [entry] = await read_dlq(kafka.bootstrap, settings.dlq_topic or "")
        assert (entry.error_type, entry.error_message, entry.attempts) == (
            "RuntimeError",
            "transient failure",
            3,
        )
        assert entry.topic == settings.controlbus_topic and entry.offset == 0
        assert entry.correlation_id == "run-42"
        assert entry.original_event is not None
        assert entry.original_event["type"] == "risk_snapshot_updated"
        assert entry.original_event["data"]["version"] == "v1"
        key = entry.original_event["data"]["idempotency_key"]
        assert (await hub.parts.store.processed_outcomes([key])).get(key) == "dlq"

        assert await replay(hub.parts.publisher, [entry]) == 1
        await consume(hub, 1)  # the group's committed offset is past the original: only the replay
        assert (await hub.parts.store.processed_outcomes([key])).get(key) == "processed"
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 1


async def test_stages_stay_separate_labels(make_hub: Callable[..., Any], kafka: KafkaService) -> None:
    async with kafka_hub(make_hub, kafka) as hub:
        for index, stage in enumerate(("backtest", "paper", "live", "paper")):
            body = sample_snapshot(version=f"v{index}", ttl_sec=600, provenance={})
            assert (await hub.post("w1", body, stage=stage)).status_code == 201
        await hub.drain()
        await consume(hub, 4)
        counts = {
            stage: hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage=stage)
            for stage in ("backtest", "paper", "live", "unknown")
        }
        assert counts == {"backtest": 1, "paper": 2, "live": 1, "unknown": 0}


async def test_events_on_the_topic_parse_with_the_cloudevents_kafka_binding(
    make_hub: Callable[..., Any], kafka: KafkaService
) -> None:
    async with kafka_hub(make_hub, kafka) as hub:
        topic = hub.parts.settings.controlbus_topic
        await post_and_publish(
            hub, "w7", sample_snapshot(ttl_sec=600), headers={"x-correlation-id": "corr-1"}
        )
        [record] = await read_topic(kafka.bootstrap, topic)
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert record.key == b"w7"
        message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
        event = from_structured(message, JSONFormat())  # the SDK's own, stdlib-json format
        attributes = event.get_attributes()
        assert attributes["specversion"] == "1.0"
        assert attributes["type"] == "risk_snapshot_updated"
        assert attributes["source"] == "riskhub"
        assert attributes["datacontenttype"] == "application/json"
        assert attributes["correlationid"] == "corr-1"
        assert attributes["time"].tzinfo is not None
        data = event.get_data()
        assert isinstance(data, dict)
        assert data["world_id"] == "w7" and data["event_version"] == 1
        assert data["idempotency_key"] == f"w7|v1|{data['hash']}|gateway|paper"
        assert attributes["id"] == event_id_for(data["idempotency_key"])  # stable across re-sends


async def run_cli(hub: HubClient, *args: str) -> tuple[int, str]:
    """Run `riskhub ...` as an operator would, with the hub's Kafka settings in the environment."""
    settings = hub.parts.settings
    env = {
        **os.environ,
        "RISKHUB_CONTROLBUS_BROKERS": settings.controlbus_brokers or "",
        "RISKHUB_CONTROLBUS_TOPIC": settings.controlbus_topic,
        "RISKHUB_DLQ_TOPIC": settings.dlq_topic or "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "riskhub.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, output.decode()


async def test_dlq_list_and_replay_commands(make_hub: Callable[..., Any], kafka: KafkaService) -> None:
    flaky_workers.FAILURES["remaining"] = 3
    async with kafka_hub(make_hub, kafka, workers=["flaky_workers:FLAKY"]) as hub:
        await post_and_publish(hub, "w9", sample_snapshot(version="v9", ttl_sec=600))
        await consume(hub, 1)
        status, listing = await run_cli(hub, "dlq", "list", "--json")
        assert status == 0, listing
        [entry] = [json.loads(line) for line in listing.splitlines() if line.startswith("{")]
        assert (entry["world_id"], entry["version"], entry["attempts"]) == ("w9", "v9", 3)
        assert entry["error_type"] == "RuntimeError"
        status, unknown = await run_cli(hub, "dlq", "replay", "--id", "no-such-id")
        assert status == 2 and "not on the DLQ" in unknown
        status, replayed = await run_cli(hub, "dlq", "replay", "--id", entry["id"])
        assert status == 0 and "replayed 1 of 1 events" in replayed
        await consume(hub, 1)
        key = f"w9|v9|{(await hub.parts.store.get_snapshot('w9', 'v9')).hash}|gateway|paper"  # type: ignore[union-attr]
        assert (await hub.parts.store.processed_outcomes([key])).get(key) == "processed"
