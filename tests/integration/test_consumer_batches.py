"""The consumer handles records in batches (a Kafka fetch, an in-process relay pass): one dedupe
query and one outcome transaction per batch. These pin what a batch may and may not do, on the
embedded and the production store: duplicates inside one batch run the workers once, a record
that cannot be handled stops the batch there (the prefix before it is recorded), and a failed
outcome transaction leaves the whole batch unhandled and uncounted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import flaky_workers
from riskhub.bus import ReceivedRecord
from riskhub.errors import StoreUnavailable

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
    flaky_workers.CALLS.clear()


NO_CONSUMER = {"run_consumer": False, "workers": ["flaky_workers:FLAKY"]}


async def test_duplicates_within_one_batch_run_the_workers_once(make_hub: Callable[..., Any]) -> None:
    async with make_hub(**NO_CONSUMER) as hub:
        first, second = await published_records(hub, 2)
        batch = [first, second, first, second, first]
        assert await hub.parts.consumer.handle_batch(batch) == 5
        assert flaky_workers.CALLS == ["v0", "v1"]
        assert (processed(hub), deduped(hub)) == (2, 3)
        assert await hub.parts.consumer.handle_batch([second]) == 1  # a later batch: the store says
        assert (processed(hub), deduped(hub)) == (2, 4)


async def test_a_record_that_cannot_be_handled_stops_the_batch_after_the_prefix(
    make_hub: Callable[..., Any],
) -> None:
    async with make_hub(**{**NO_CONSUMER, "dlq_topic": None}) as hub:  # no DLQ: v1 is not handled
        records = await published_records(hub, 3)
        flaky_workers.FAILING_VERSIONS.add("v1")
        assert await hub.parts.consumer.handle_batch(records) == 1
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
        assert await hub.parts.consumer.handle_batch(records) == 2  # redelivered: handled once
        assert (processed(hub), deduped(hub)) == (2, 0)
