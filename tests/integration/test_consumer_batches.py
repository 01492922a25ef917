"""The consumer handles records in batches (a Kafka fetch, an in-process relay pass): one dedupe
query and one outcome transaction per batch. These pin what a batch may and may not do, on the
embedded and the production store: duplicates inside one batch run the workers once, a record
that cannot be handled stops the batch there (the prefix before it is recorded), and a failed
outcome transaction leaves the whole batch unhandled and uncounted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest

import flaky_workers
from riskhub.bus import ReceivedRecord
from riskhub.errors import StoreUnavailable
from riskhub.model import OUTCOME_DLQ, Outcome

from conftest import HubClient, sample_snapshot


async def published_records(hub: HubClient, count: int) -> list[ReceivedRecord]:
    """POST ``count`` snapshots to w1 and publish their events (nobody subscribed)."""
    for i in range(count):
        response = await hub.post("w1", sample_snapshot(version=f"v{i}", ttl_sec=600))
        assert response.status_code == 201, response.text
    await hub.drain()
    assert hub.parts.memory_bus is not None
    records = hub.parts.memory_bus.recent(hub.parts.settings.controlbus_topic)
    assert len(records) == count
    return records


def processed(hub: HubClient) -> float:
    return hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper")


def deduped(hub: HubClient) -> float:
    return hub.metric("risk_hub_snapshot_dedupe_total", world_id="w1", stage="paper")


async def key_of(hub: HubClient, version: str) -> str:
    stored = await hub.parts.store.get_snapshot("w1", version)
    assert stored is not None
    return f"w1|{version}|{stored.hash}|gateway|paper"


@pytest.fixture(autouse=True)
def reset_flaky() -> None:
    flaky_workers.FAILURES["remaining"] = 0
    flaky_workers.FAILING_VERSIONS.clear()
    flaky_workers.UNENCODABLE_VERSIONS.clear()
    flaky_workers.CALLS.clear()


NO_CONSUMER = {"run_consumer": False, "workers": ["flaky_workers:FLAKY"]}


async def test_duplicates_within_one_batch_run_the_workers_once(make_hub: Callable[..., Any]) -> None:
    async with make_hub(**NO_CONSUMER) as hub:
        first, second = await published_records(hub, 2)
        batch = [first, second, first, second, first]
        assert await hub.parts.consumer.handle_batch(batch) == [True] * 5
        assert flaky_workers.CALLS == ["v0", "v1"]
        assert (processed(hub), deduped(hub)) == (2, 3)
        assert await hub.parts.consumer.handle_batch([second]) == [True]  # a later batch: the store says
        assert (processed(hub), deduped(hub)) == (2, 4)


async def test_a_record_that_cannot_be_handled_stops_the_batch_after_the_prefix(
    make_hub: Callable[..., Any],
) -> None:
    async with make_hub(**{**NO_CONSUMER, "dlq_topic": None}) as hub:  # no DLQ: v1 is not handled
        records = await published_records(hub, 3)
        flaky_workers.FAILING_VERSIONS.add("v1")
        assert await hub.parts.consumer.handle_batch(records) == [True, False, False]
        assert flaky_workers.CALLS == ["v0", "v1", "v1", "v1"]  # v2 not run: order holds
        assert processed(hub) == 1
        keys = [await key_of(hub, version) for version in ("v0", "v1", "v2")]
        assert await hub.parts.store.processed_outcomes(keys) == {keys[0]: "processed"}


async def test_a_failed_outcome_transaction_leaves_the_batch_unhandled(make_hub: Callable[..., Any]) -> None:
    async with make_hub(**NO_CONSUMER) as hub:
        records = await published_records(hub, 2)
        store = hub.parts.store

        async def store_down(*_: Any) -> list[bool]:
            raise StoreUnavailable("store unavailable: test")

        real = store.record_outcomes
        store.record_outcomes = store_down  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable):
            await hub.parts.consumer.handle_batch(records)
        assert (processed(hub), deduped(hub)) == (0, 0)  # nothing counted for an unrecorded batch
        store.record_outcomes = real  # type: ignore[method-assign]
        assert await hub.parts.consumer.handle_batch(records) == [True, True]  # redelivered: once
        assert (processed(hub), deduped(hub)) == (2, 0)


async def test_in_process_a_stuck_world_does_not_hold_the_others(make_hub: Callable[..., Any]) -> None:
    """No DLQ: w1's v0 keeps failing. The relay pass still delivers w2, and w1's later v1 waits
    behind v0 (order), also across passes."""
    async with make_hub(dlq_topic=None, workers=["flaky_workers:FLAKY"]) as hub:
        flaky_workers.FAILING_VERSIONS.add("v0")
        for world, version in (("w1", "v0"), ("w2", "v0b"), ("w1", "v1")):
            response = await hub.post(world, sample_snapshot(version=version, ttl_sec=600))
            assert response.status_code == 201, response.text
        assert await hub.parts.relay.publish_pending() == (1, 1)  # w2 published, w1 failed
        assert await hub.parts.relay.publish_pending() == (0, 1)  # w1 still stuck, v1 behind v0
        assert flaky_workers.CALLS.count("v1") == 0
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="w2", stage="paper") == 1
        assert (await hub.parts.store.outbox_backlog()).pending == 2


async def test_odd_event_data_neither_crashes_nor_stops_the_batch(make_hub: Callable[..., Any]) -> None:
    """Data no producer of ours sends: an expiry beyond year 9999 (OverflowError) and a
    provenance that is not an object (AttributeError) used to abort the whole batch."""
    async with make_hub(**NO_CONSUMER) as hub:
        (good,) = await published_records(hub, 1)
        envelope = json.loads(good.value or b"")
        data = envelope["data"]
        odd = [
            {**envelope, "id": "p1", "data": {**data, "ttl_sec": 10**15, "idempotency_key": "far"}},
            {**envelope, "id": "p2", "data": {**data, "provenance": "x", "idempotency_key": None}},
        ]
        batch = [replace(good, value=json.dumps(e).encode(), offset=i + 10) for i, e in enumerate(odd)]
        assert await hub.parts.consumer.handle_batch([*batch, good]) == [True, True, True]
        assert flaky_workers.CALLS == ["v0", "v0", "v0"]  # each ran once, under its own key
        assert processed(hub) == 2  # p1 and the good one (w1/paper); p2 has no stage label


async def test_a_long_batch_runs_each_key_once_against_older_stored_outcomes(
    make_hub: Callable[..., Any],
) -> None:
    """What the batch decided earlier holds for its later records, even where the store has an
    older outcome (v1 was dead-lettered before, so its first record here runs the workers)."""
    async with make_hub(**NO_CONSUMER) as hub:
        first, second = await published_records(hub, 2)
        await hub.parts.store.record_outcomes([Outcome(await key_of(hub, "v1"), OUTCOME_DLQ)])
        batch = [first, second] * 20
        assert await hub.parts.consumer.handle_batch(batch) == [True] * len(batch)
        assert flaky_workers.CALLS == ["v0", "v1"]
        assert (processed(hub), deduped(hub)) == (2, len(batch) - 2)


async def test_a_row_no_store_can_hold_fails_its_worker_not_the_batch(make_hub: Callable[..., Any]) -> None:
    """A worker row is encoded when it is made: an unencodable one is a failed attempt (retried,
    then dead-lettered). It used to fail the outcome transaction of the whole batch, every time
    the batch came back: no record after it was ever handled."""
    async with make_hub(**NO_CONSUMER) as hub:
        records = await published_records(hub, 2)
        flaky_workers.UNENCODABLE_VERSIONS.add("v0")
        assert await hub.parts.consumer.handle_batch(records) == [True, True]
        assert flaky_workers.CALLS == ["v0", "v0", "v0", "v1"]
        assert hub.metric("risk_hub_snapshot_dlq_total", world_id="w1", stage="paper") == 1
        keys = [await key_of(hub, version) for version in ("v0", "v1")]
        assert await hub.parts.store.processed_outcomes(keys) == {keys[0]: "dlq", keys[1]: "processed"}


async def test_event_keys_and_worlds_no_store_or_metric_can_hold_are_dead_lettered(
    make_hub: Callable[..., Any],
) -> None:
    """A foreign event whose idempotency key holds NUL or an unpaired surrogate could not be
    looked up or stored (the dedupe query of the whole batch failed); a world id that is no world
    id would have broken /metrics. The first is undecodable (DLQ), the second is labelled unknown."""
    async with make_hub(**NO_CONSUMER) as hub:
        (good,) = await published_records(hub, 1)
        envelope = json.loads(good.value or b"")
        data = envelope["data"]
        odd = [
            {**envelope, "id": "p1", "data": {**data, "idempotency_key": "k\u0000"}},
            {**envelope, "id": "p2", "data": {**data, "idempotency_key": "k\ud800"}},
            {**envelope, "id": "p3", "data": {**data, "world_id": "w\ud800", "idempotency_key": "p3"}},
        ]
        batch = [replace(good, value=json.dumps(e).encode(), offset=i + 10) for i, e in enumerate(odd)]
        assert await hub.parts.consumer.handle_batch([*batch, good]) == [True] * 4
        assert hub.metric("risk_hub_snapshot_dlq_total", world_id="unknown", stage="unknown") == 2
        assert hub.metric("risk_hub_snapshot_processed_total", world_id="unknown", stage="paper") == 1
        assert processed(hub) == 1
        assert b"risk_hub_snapshot_processed_total" in generate_latest(hub.parts.metrics.registry)
