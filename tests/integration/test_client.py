"""RiskHubClient against real `riskhub serve` processes over real HTTP: contract checks before
sending, blake3 hashes, retries through a real faulty server in front of the hub (503, lost
answers, dropped connections, Retry-After), typed errors, and offload to the hub's blob store."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from live_hub import lookup, metric, start_hub, stored_versions
from riskhub.blobs import BlobStore, FileBlobStore, RedisBlobStore, S3BlobStore
from riskhub.client import (
    AsyncRiskHubClient,
    HubUnavailable,
    RetryPolicy,
    RiskHubClient,
)
from riskhub.contract import verify_hash
from riskhub.errors import (
    ContractError,
    Forbidden,
    MalformedRequest,
    RequestRejected,
    SnapshotExpired,
    Unauthorized,
    VersionConflict,
)
from scripted_proxy import ScriptedProxy

from conftest import READ_TOKEN, ROOT, TOKEN, ServerProcess, sample_snapshot
from services import RedisService, S3Service, free_port

SAMPLES = ROOT / "operations/risk_hub/samples"
SAMPLE_BLAKE3 = "blake3:6f51f65f0e47418ef1003d6818b3fa4d927f993bb67ab38e9c175e81cc12b3e4"
FAST = RetryPolicy(max_attempts=4, backoff_s=0.05, max_backoff_s=0.2, budget_s=10)


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-blobs")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, blob_dir: Path) -> Iterator[ServerProcess]:
    """One real hub for this module (each test uses its own worlds), blobs in ``blob_dir``."""
    server = start_hub(tmp_path_factory.mktemp("client-hub"), RISKHUB_BLOB_URL=f"file://{blob_dir}")
    yield server
    server.stop()


def new_world() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def client_for(url: str, **options: Any) -> AsyncRiskHubClient:
    options = {"actor": "gateway", "stage": "paper", "retry": FAST, **options}
    return AsyncRiskHubClient(url, options.pop("token", TOKEN), **options)


# --- publish, dedupe, read ---------------------------------------------------------------------


async def test_publish_sends_the_design_blake3_hash_and_a_repeat_is_deduplicated(
    hub: ServerProcess,
) -> None:
    world = "w1-" + uuid.uuid4().hex[:6]
    async with client_for(hub.url) as client:
        first = await client.publish(world, sample_snapshot())
        again = await client.publish(world, sample_snapshot())
        latest = await client.latest(world)
    assert (first.status, first.created) == (201, True)
    assert (again.status, again.created) == (200, False)
    assert first.hash == again.hash == latest["hash"]
    assert stored_versions(hub, world) == ["v1"]
    assert metric(hub, "risk_hub_snapshot_dedupe_total", world_id=world, stage="paper") == 1
    async with client_for(hub.url) as client:
        vector = await client.prepare("w1", sample_snapshot())
    assert vector.hash == SAMPLE_BLAKE3  # DESIGN's interoperability vector


def test_sync_client_publishes_and_reads_the_latest(hub: ServerProcess) -> None:
    world = new_world()
    with RiskHubClient(hub.url, TOKEN, actor="gateway", stage="paper", retry=FAST) as client:
        receipt = client.publish(world, sample_snapshot(ttl_sec=600))
        latest = client.latest(world, stage="paper")
    assert receipt.created and latest["version"] == "v1" and latest["hash"] == receipt.hash
    assert "token" not in repr(client).lower() and TOKEN not in repr(client)


async def test_actor_and_stage_come_from_the_snapshot_when_the_client_has_none(
    hub: ServerProcess,
) -> None:
    world = new_world()
    async with AsyncRiskHubClient(hub.url, TOKEN, retry=FAST) as client:
        receipt = await client.publish(world, sample_snapshot(ttl_sec=600))
    stored = lookup(hub, world, "v1")
    assert receipt.created and stored["provenance"] == {"actor": "gateway", "stage": "paper"}


async def test_latest_of_an_expired_snapshot_raises_snapshot_expired(hub: ServerProcess) -> None:
    world = new_world()
    async with client_for(hub.url) as client:
        await client.publish(world, sample_snapshot(ttl_sec=1))
        await asyncio.sleep(1.2)
        with pytest.raises(SnapshotExpired, match="v1"):
            await client.latest(world)


# --- retries through a real faulty server --------------------------------------------------------


async def test_two_503s_then_201_is_one_stored_snapshot(hub: ServerProcess) -> None:
    world = new_world()
    with ScriptedProxy(hub.url, ["503", "503"]) as proxy:
        async with client_for(proxy.url) as client:
            receipt = await client.publish(world, sample_snapshot(ttl_sec=600))
    posts = proxy.posts()
    assert [p.answered for p in posts] == ["503", "503", "forward"]
    assert len({p.body for p in posts}) == 1  # every attempt carries the same bytes and hash
    assert len({p.headers["x-correlation-id"] for p in posts}) == 1
    assert (receipt.status, receipt.created) == (201, True)
    assert stored_versions(hub, world) == ["v1"]


async def test_an_answer_lost_after_the_hub_stored_it_is_retried_into_a_200(hub: ServerProcess) -> None:
    world = new_world()
    with ScriptedProxy(hub.url, ["forward-then-503"]) as proxy:
        async with client_for(proxy.url) as client:
            receipt = await client.publish(world, sample_snapshot(ttl_sec=600))
    assert [p.answered for p in proxy.posts()] == ["forward-then-503", "forward"]
    assert (receipt.status, receipt.created) == (200, False)
    assert stored_versions(hub, world) == ["v1"]
    assert metric(hub, "risk_hub_snapshot_dedupe_total", world_id=world, stage="paper") == 1


async def test_a_dropped_connection_and_a_429_are_retried(hub: ServerProcess) -> None:
    world = new_world()
    with ScriptedProxy(hub.url, ["hang-up", "429"]) as proxy:
        async with client_for(proxy.url) as client:
            receipt = await client.publish(world, sample_snapshot(ttl_sec=600))
    assert [p.answered for p in proxy.posts()] == ["hang-up", "429", "forward"]
    assert receipt.created


async def test_retry_after_from_the_hub_is_honoured(hub: ServerProcess) -> None:
    with ScriptedProxy(hub.url, ["503"], retry_after="1") as proxy:
        async with client_for(proxy.url) as client:
            started = time.monotonic()
            await client.publish(new_world(), sample_snapshot(ttl_sec=600))
            elapsed = time.monotonic() - started
    assert len(proxy.posts()) == 2
    assert elapsed >= 1.0  # the jittered backoff alone would wait at most 0.05 s


async def test_gives_up_after_max_attempts_with_the_last_status(hub: ServerProcess) -> None:
    world = new_world()
    with ScriptedProxy(hub.url, ["503"] * 10) as proxy:
        retry = RetryPolicy(max_attempts=3, backoff_s=0.01, budget_s=10)
        async with client_for(proxy.url, retry=retry) as client:
            with pytest.raises(HubUnavailable, match="gave up after 3 attempts") as caught:
                await client.publish(world, sample_snapshot(ttl_sec=600))
    assert caught.value.status == 503 and len(proxy.posts()) == 3
    assert stored_versions(hub, world) == []


async def test_the_retry_budget_stops_a_wait_that_would_overrun_it(hub: ServerProcess) -> None:
    with ScriptedProxy(hub.url, ["503"] * 10, retry_after="5") as proxy:
        retry = RetryPolicy(max_attempts=10, backoff_s=0.01, budget_s=2)
        async with client_for(proxy.url, retry=retry) as client:
            started = time.monotonic()
            with pytest.raises(HubUnavailable, match="gave up after 1 attempt"):
                await client.publish(new_world(), sample_snapshot(ttl_sec=600))
    assert time.monotonic() - started < 1.5 and len(proxy.posts()) == 1


async def test_an_unreachable_hub_raises_hub_unavailable() -> None:
    async with client_for(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(HubUnavailable, match="unreachable") as caught:
            await client.publish(new_world(), sample_snapshot())
    assert caught.value.status is None and "gave up after 4 attempts" in caught.value.message


# --- typed refusals, never retried ------------------------------------------------------------


async def test_a_422_is_raised_with_the_hubs_field_and_never_retried(hub: ServerProcess) -> None:
    doc = sample_snapshot(stress_ref="file:///etc/passwd")
    del doc["stress"]
    with ScriptedProxy(hub.url) as proxy:
        async with client_for(proxy.url) as client:
            with pytest.raises(ContractError) as caught:
                await client.publish(new_world(), doc)
    assert caught.value.field == "stress_ref"
    assert "does not point into the configured blob store" in caught.value.message
    assert len(proxy.posts()) == 1


async def test_a_version_conflict_is_a_409_never_retried(hub: ServerProcess) -> None:
    world = new_world()
    with ScriptedProxy(hub.url) as proxy:
        async with client_for(proxy.url) as client:
            await client.publish(world, sample_snapshot(ttl_sec=600))
            changed = sample_snapshot(ttl_sec=600, weights={"strategy_a": 0.5, "strategy_b": 0.5})
            with pytest.raises(VersionConflict):
                await client.publish(world, changed)
    assert len(proxy.posts()) == 2
    assert lookup(hub, world, "v1")["weights"] == {"strategy_a": 0.6, "strategy_b": 0.4}


@pytest.mark.parametrize(
    ("token", "error"), [("wrong-token", Unauthorized), (READ_TOKEN, Forbidden)], ids=["401", "403"]
)
async def test_auth_refusals_are_typed_and_never_retried(
    hub: ServerProcess, token: str, error: type[Exception]
) -> None:
    with ScriptedProxy(hub.url) as proxy:
        async with client_for(proxy.url, token=token) as client:
            with pytest.raises(error, match="Authorization"):
                await client.publish(new_world(), sample_snapshot())
    assert len(proxy.posts()) == 1


async def test_contract_violations_are_raised_before_any_request(hub: ServerProcess) -> None:
    cases: list[tuple[dict[str, Any], type[RequestRejected], str]] = [
        (sample_snapshot(weights={"strategy_a": 0.5, "strategy_b": 0.4}), ContractError, "weights"),
        (sample_snapshot(ttl_sec=0), ContractError, "ttl_sec"),
        (sample_snapshot(provenance={"stage": "paper"}), MalformedRequest, "provenance.actor"),
        (sample_snapshot(hash="blake3:" + "0" * 64), ContractError, "hash"),
        (
            sample_snapshot(realized_returns={"strategy_a": [0.01, True]}),
            ContractError,
            "realized_returns.strategy_a[1]",
        ),
    ]
    with ScriptedProxy(hub.url) as proxy:
        async with AsyncRiskHubClient(proxy.url, TOKEN, retry=FAST) as client:
            for doc, error, field in cases:
                with pytest.raises(error) as caught:
                    await client.publish(new_world(), doc)
                assert caught.value.field == field
                assert caught.value.message.startswith(f"{field}:")
    assert proxy.seen == []


# --- offload to the hub's blob store ------------------------------------------------------------


def twenty_strategies() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "risk_snapshot_20_strategies.json").read_text())
    return doc


async def assert_offloaded_and_expanded_exactly(
    hub: ServerProcess, blobs: BlobStore, store_prefix: str
) -> None:
    world, original = new_world(), twenty_strategies()
    client = client_for(hub.url, actor="risk-engine", stage="live", blobs=blobs, inline_cov_threshold=4096)
    async with client:
        receipt = await client.publish(world, original)
        again = await client.publish(world, original)
    assert sorted(receipt.offloaded) == ["covariance", "realized_returns"]  # stress is small
    assert all(ref.startswith(store_prefix) for ref in receipt.offloaded.values())
    assert receipt.created and not again.created and again.hash == receipt.hash
    stored = lookup(hub, world, "v20")
    assert stored["covariance_ref"] == receipt.offloaded["covariance"]
    assert "covariance" not in stored and "hub_offloaded" not in stored
    # The hash covers what the producer sent: the refs, not the offloaded parts.
    assert stored["hash"] == receipt.hash and verify_hash(stored, resolve=pytest.fail)
    expanded = lookup(hub, world, "v20", expand=True)
    assert expanded["covariance"] == original["covariance"]
    assert expanded["realized_returns"] == original["realized_returns"]


async def test_large_parts_go_to_the_hubs_file_blob_store_before_hashing(
    hub: ServerProcess, blob_dir: Path
) -> None:
    await assert_offloaded_and_expanded_exactly(hub, FileBlobStore(blob_dir), f"file://{blob_dir}/")


async def test_large_parts_go_to_the_hubs_s3_bucket(
    server_factory: Callable[..., ServerProcess], s3: S3Service
) -> None:
    prefix = f"client-{uuid.uuid4().hex[:8]}"
    hub = server_factory(
        RISKHUB_BLOB_URL=f"s3://riskhub-test/{prefix}", RISKHUB_S3_ENDPOINT_URL=s3.endpoint_url
    )
    blobs = S3BlobStore("riskhub-test", prefix, endpoint_url=s3.endpoint_url)
    await assert_offloaded_and_expanded_exactly(hub, blobs, f"s3://riskhub-test/{prefix}/")


async def test_large_parts_go_to_the_hubs_redis_blob_store(
    server_factory: Callable[..., ServerProcess], redis_server: RedisService
) -> None:
    hub = server_factory(RISKHUB_BLOB_URL=redis_server.url)
    await assert_offloaded_and_expanded_exactly(hub, RedisBlobStore(redis_server.url), "redis://risk-blobs:")


async def test_a_ref_into_another_store_is_refused_by_the_hub(hub: ServerProcess, tmp_path: Path) -> None:
    client = client_for(hub.url, blobs=FileBlobStore(tmp_path / "elsewhere"), inline_cov_threshold=16)
    async with client:
        with pytest.raises(ContractError) as caught:
            await client.publish(new_world(), sample_snapshot())
    assert caught.value.field in ("realized_returns_ref", "stress_ref")


async def test_without_a_blob_store_parts_go_inline_and_the_hub_offloads_them(
    server_factory: Callable[..., ServerProcess],
) -> None:
    hub = server_factory(RISKHUB_INLINE_COV_THRESHOLD="4096")
    world, original = new_world(), twenty_strategies()
    async with client_for(hub.url, actor="risk-engine", stage="live", inline_cov_threshold=16) as client:
        receipt = await client.publish(world, original)
    assert receipt.offloaded == {}
    stored = lookup(hub, world, "v20")
    assert sorted(stored["hub_offloaded"]) == ["covariance", "realized_returns"]
    assert stored["covariance_ref"].startswith("file://")
    assert lookup(hub, world, "v20", expand=True)["covariance"] == original["covariance"]
