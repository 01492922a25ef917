"""Write and read paths over HTTP on the embedded hub: idempotency, conflict, TTL, expand, history."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

import riskhub.hub as hub_module
from riskhub.contract import risk_snapshot_dedupe_key, snapshot_hash, verify_hash
from riskhub.contract.canonical import canonical_json

from conftest import (
    FakeClock,
    HubClient,
    Production,
    corrupt_blob,
    delete_blob,
    sample_snapshot,
)


async def test_new_snapshot_is_201_and_served_as_latest(hub: HubClient) -> None:
    created = await hub.post("w1", sample_snapshot())
    assert created.status_code == 201
    assert created.json()["hash"] == (
        "sha256:c6b7b8cadc9eebf4175cfac973a360346ae2af3266ccbae8af42a9f386226338"
    )
    latest = await hub.get("/risk-hub/worlds/w1/snapshots/latest")
    assert latest.status_code == 200
    body = latest.json()
    assert body["version"] == "v1"
    assert body["weights"] == {"strategy_a": 0.6, "strategy_b": 0.4}
    assert body["expired"] is False
    assert hub.metric("risk_hub_snapshot_accepted_total", world_id="w1", stage="paper") == 1


async def test_same_snapshot_again_is_200_and_counts_a_dedupe(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot())).status_code == 201
    again = await hub.post("w1", sample_snapshot())
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert hub.metric("risk_hub_snapshot_dedupe_total", world_id="w1", stage="paper") == 1


async def test_blake3_retry_of_a_sha256_snapshot_is_the_same_snapshot(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot())).status_code == 201
    blake = "blake3:6f51f65f0e47418ef1003d6818b3fa4d927f993bb67ab38e9c175e81cc12b3e4"
    again = await hub.post("w1", sample_snapshot(hash=blake))
    assert again.status_code == 200
    # the stored hash stays the first accepted one
    assert again.json()["hash"].startswith("sha256:")


async def test_same_version_different_weights_is_409(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot())).status_code == 201
    other = await hub.post("w1", sample_snapshot(weights={"strategy_a": 0.5, "strategy_b": 0.5}))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "version_conflict"
    assert "v1" in other.json()["error"]["message"]
    latest = await hub.get("/risk-hub/worlds/w1/snapshots/latest")
    assert latest.json()["weights"] == {"strategy_a": 0.6, "strategy_b": 0.4}


async def test_same_version_in_two_worlds_does_not_collide(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot())).status_code == 201
    assert (await hub.post("w2", sample_snapshot())).status_code == 201


async def test_expired_latest_is_404_naming_version_without_fallback(
    make_hub: Callable[..., Any],
) -> None:
    clock = FakeClock()
    async with make_hub(clock=clock) as hub:
        assert (await hub.post("w1", sample_snapshot(version="old", ttl_sec=3600))).status_code == 201
        clock.advance(1)
        newer = sample_snapshot(version="new", as_of="2025-01-02T00:00:00Z", ttl_sec=1)
        assert (await hub.post("w1", newer)).status_code == 201
        assert (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["version"] == "new"
        clock.advance(1.5)
        gone = await hub.get("/risk-hub/worlds/w1/snapshots/latest")
        assert gone.status_code == 404
        error = gone.json()["error"]
        assert error["code"] == "snapshot_expired"
        assert "'new'" in error["message"] and "expired at" in error["message"]
        history = (await hub.get("/risk-hub/worlds/w1/snapshots")).json()["snapshots"]
        assert [(s["version"], s["expired"]) for s in history] == [("new", True), ("old", False)]
        found = await hub.get("/risk-hub/worlds/w1/snapshots/lookup", version="new")
        assert found.json()["expired"] is True


async def test_latest_is_greatest_as_of_compared_as_utc_not_text(hub: HubClient) -> None:
    # 09:30+09:00 is 00:30Z: later than 00:10Z although the string sorts lower.
    later = sample_snapshot(version="a", as_of="2025-01-01T09:30:00+09:00", ttl_sec=600)
    earlier = sample_snapshot(version="b", as_of="2025-01-01T00:10:00Z", ttl_sec=600)
    assert (await hub.post("w1", later)).status_code == 201
    assert (await hub.post("w1", earlier)).status_code == 201
    assert (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["version"] == "a"


async def test_retry_of_an_older_version_does_not_regress_latest(hub: HubClient) -> None:
    old = sample_snapshot(version="old", as_of="2025-01-01T00:00:00Z", ttl_sec=600)
    new = sample_snapshot(version="new", as_of="2025-01-02T00:00:00Z", ttl_sec=600)
    for body in (old, new, old):
        assert (await hub.post("w1", body)).status_code in (200, 201)
    assert (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["version"] == "new"


async def test_latest_filters_by_stage_and_actor(hub: HubClient) -> None:
    paper = sample_snapshot(version="p", as_of="2025-01-01T00:00:00Z", ttl_sec=600)
    live = sample_snapshot(version="l", as_of="2025-01-01T00:05:00Z", ttl_sec=600, provenance={})
    assert (await hub.post("w1", paper)).status_code == 201
    assert (await hub.post("w1", live, stage="live", actor="risk-engine")).status_code == 201
    base = "/risk-hub/worlds/w1/snapshots/latest"
    assert (await hub.get(base)).json()["version"] == "l"
    assert (await hub.get(base, stage="paper")).json()["version"] == "p"
    assert (await hub.get(base, stage="LIVE")).json()["version"] == "l"
    assert (await hub.get(base, actor="gateway")).json()["version"] == "p"
    assert (await hub.get(base, stage="backtest")).status_code == 404


async def test_a_read_naming_what_no_store_can_hold_is_422_not_a_store_error(hub: HubClient) -> None:
    """NUL cannot be in a PostgreSQL text column: such a read is the reader's mistake (422),
    not "store unavailable, retry later" (503), on every backend alike."""
    base = "/risk-hub/worlds/w1/snapshots"
    for path, params, field in [
        (f"{base}/lookup", {"version": "v\x001"}, "version"),
        (f"{base}/latest", {"actor": "gate\x00way"}, "actor"),
        (base, {"actor": "gate\x00way"}, "actor"),
        ("/risk-hub/worlds/w%001/snapshots/latest", {}, "world_id"),
    ]:
        response = await hub.get(path, **params)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["field"] == field


async def test_replicas_sharing_postgresql_without_redis_serve_what_another_stored(
    make_hub: Callable[..., Any], production: Production
) -> None:
    """No shared cache, no cache: an in-process one would keep serving what the other replica
    has since replaced."""
    shared = {**production.settings(), "redis_url": None}
    latest = "/risk-hub/worlds/w1/snapshots/latest"
    async with make_hub(**shared) as first, make_hub(**shared) as second:
        older = sample_snapshot(version="v1", as_of="2025-01-01T00:00:00Z", ttl_sec=600)
        assert (await first.post("w1", older)).status_code == 201
        assert (await first.get(latest)).json()["version"] == "v1"
        newer = sample_snapshot(version="v2", as_of="2025-01-02T00:00:00Z", ttl_sec=600)
        assert (await second.post("w1", newer)).status_code == 201
        assert (await first.get(latest)).json()["version"] == "v2"


async def test_lookup_by_as_of_returns_the_snapshot_in_force(hub: HubClient) -> None:
    for version, as_of in (("a", "2025-01-01T00:00:00Z"), ("b", "2025-01-03T00:00:00Z")):
        body = sample_snapshot(version=version, as_of=as_of, ttl_sec=600)
        assert (await hub.post("w1", body)).status_code == 201
    found = await hub.get("/risk-hub/worlds/w1/snapshots/lookup", as_of="2025-01-02T12:00:00Z")
    assert found.json()["version"] == "a"
    none = await hub.get("/risk-hub/worlds/w1/snapshots/lookup", as_of="2024-12-31T00:00:00Z")
    assert none.status_code == 404


async def test_large_parts_are_offloaded_and_expand_restores_them_exactly(
    make_hub: Callable[..., Any],
) -> None:
    ids = [f"s{i}" for i in range(10)]
    covariance = {f"{a},{b}": 0.01 + 1e-6 * int(min(a, b)[1:]) * int(max(a, b)[1:]) for a in ids for b in ids}
    returns = {i: [0.001 * k for k in range(50)] for i in ids}
    body = sample_snapshot(
        weights={i: 0.1 for i in ids}, covariance=covariance, realized_returns=returns, stress=None
    )
    async with make_hub(inline_cov_threshold=1024) as hub:
        assert (await hub.post("w1", body)).status_code == 201
        stored = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
        assert "covariance" not in stored
        assert hub.parts.blobs.address_of(stored["covariance_ref"]) is not None
        assert sorted(stored["hub_offloaded"]) == ["covariance", "realized_returns"]
        expanded = (await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")).json()
        assert expanded["covariance"] == covariance
        assert expanded["realized_returns"] == {k: [float(x) for x in v] for k, v in returns.items()}
        assert "covariance_ref" not in expanded and "hub_offloaded" not in expanded

        async def resolve(ref: str) -> Any:
            return __import__("orjson").loads(await hub.parts.blobs.get(ref))

        parts = {stored[f"{p}_ref"]: await resolve(stored[f"{p}_ref"]) for p in stored["hub_offloaded"]}
        assert verify_hash(stored, parts.__getitem__)
        view = {k: v for k, v in expanded.items() if k not in ("expired", "created_at", "hash")}
        assert snapshot_hash(view) == stored["hash"]


async def test_parts_the_hub_offloads_to_redis_never_expire(
    make_hub: Callable[..., Any], production: Production
) -> None:
    """Blobs expire only while nothing refers to them (``blob_redis_ttl_sec``): the parts of an
    accepted snapshot are pinned, and a producer's later unpinned upload of the same content
    (another world, a retry) does not put an expiry back on them."""
    ids = [f"s{i}" for i in range(10)]
    body = sample_snapshot(
        weights={i: 0.1 for i in ids}, covariance={f"{a},{b}": 0.02 for a in ids for b in ids}
    )
    redis_blobs = {"blob_url": production.redis.url, "blob_redis_prefix": f"{production.namespace}:blob:"}
    async with make_hub(inline_cov_threshold=512, blob_redis_ttl_sec=60, **redis_blobs) as hub:
        assert (await hub.post("w1", body)).status_code == 201
        ref = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["covariance_ref"]
        key = ref.removeprefix("redis://")
        client = aioredis.Redis.from_url(production.redis.url)
        try:
            assert await client.ttl(key) == -1
            assert await hub.parts.blobs.put(await hub.parts.blobs.get(ref)) == ref  # a producer upload
            assert await client.ttl(key) == -1
            assert (await hub.post("w2", body)).status_code == 201  # the same part again
            assert await client.ttl(key) == -1
        finally:
            await client.aclose()


async def test_corrupted_blob_is_detected_on_expand(make_hub: Callable[..., Any]) -> None:
    ids = [f"s{i}" for i in range(10)]
    covariance = {f"{a},{b}": 0.02 for a in ids for b in ids}
    body = sample_snapshot(weights={i: 0.1 for i in ids}, covariance=covariance)
    async with make_hub(inline_cov_threshold=512) as hub:
        assert (await hub.post("w1", body)).status_code == 201
        ref = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["covariance_ref"]
        await corrupt_blob(hub, ref)
        broken = await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")
        assert broken.status_code == 502
        assert broken.json()["error"]["code"] == "blob_corrupted"
        assert hub.metric("risk_hub_blob_errors_total", operation="get", kind="corrupted") == 1


async def test_a_missing_blob_is_the_hubs_failure_on_expand_not_the_readers(
    make_hub: Callable[..., Any],
) -> None:
    ids = [f"s{i}" for i in range(10)]
    body = sample_snapshot(
        weights={i: 0.1 for i in ids}, covariance={f"{a},{b}": 0.02 for a in ids for b in ids}
    )
    async with make_hub(inline_cov_threshold=512) as hub:
        assert (await hub.post("w1", body)).status_code == 201
        ref = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["covariance_ref"]
        await delete_blob(hub, ref)
        gone = await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")
        assert gone.status_code == 502, gone.text
        assert gone.json()["error"]["code"] == "blob_missing"
        assert hub.metric("risk_hub_blob_errors_total", operation="get", kind="missing") == 1


async def test_a_new_world_and_stage_starts_every_queue_counter_at_zero(hub: HubClient) -> None:
    """Alerts use ``increase(risk_hub_snapshot_dlq_total[15m]) > 0``: a series that appears only
    with its first event would make that first event invisible to them."""
    assert (await hub.post("w1", sample_snapshot(ttl_sec=600))).status_code == 201
    exposition = (await hub.client.get("/metrics")).text
    for name in ("processed", "failed", "retry", "dlq", "dedupe", "expired"):
        assert f'risk_hub_snapshot_{name}_total{{stage="paper",world_id="w1"}}' in exposition, name


async def test_event_reaches_the_consumer_once_and_workers_run(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot(ttl_sec=600))).status_code == 201
    assert (await hub.post("w1", sample_snapshot(ttl_sec=600))).status_code == 200
    await hub.drain()
    assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 1
    records = hub.parts.memory_bus.recent("policy") if hub.parts.memory_bus else []
    assert len(records) == 1
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"
    assert records[0].key == b"w1"
    backlog = await hub.parts.store.outbox_backlog()
    assert backlog.pending == 0


async def test_an_older_new_version_after_a_restart_does_not_become_latest(
    make_hub: Callable[..., Any],
) -> None:
    # The cache starts empty after a restart; a newly POSTed but older snapshot must not be
    # cached as "latest" while a newer one (here expired) exists in the store.
    clock = FakeClock()
    async with make_hub(clock=clock) as hub:
        newest = sample_snapshot(version="newest", as_of="2025-01-05T00:00:00Z", ttl_sec=1)
        assert (await hub.post("w1", newest)).status_code == 201
    clock.advance(2)
    async with make_hub(clock=clock) as restarted:
        older = sample_snapshot(version="older", as_of="2025-01-01T00:00:00Z", ttl_sec=600)
        assert (await restarted.post("w1", older)).status_code == 201
        latest = await restarted.get("/risk-hub/worlds/w1/snapshots/latest")
        assert latest.status_code == 404
        assert "'newest'" in latest.json()["error"]["message"]


async def test_any_json_string_is_stored_and_served_exactly(hub: HubClient) -> None:
    """NUL and other control characters are valid JSON string content (PostgreSQL jsonb refused
    them: a 503 for a valid snapshot, and a poison worker row); ids carrying them reach the workers."""
    odd = "nul\u0000 bell\u0007 é 𝄞"
    body = sample_snapshot(
        weights={f"strategy_{odd}": 0.6, "strategy_b": 0.4}, constraints={"max_weight": 0.5}, note=odd
    )
    assert (await hub.post("w1", body)).status_code == 201
    latest = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
    assert latest["note"] == odd and latest["weights"] == {f"strategy_{odd}": 0.6, "strategy_b": 0.4}
    assert verify_hash(latest, lambda ref: None)
    await hub.drain()
    assert hub.metric("risk_hub_snapshot_processed_total", world_id="w1", stage="paper") == 1
    key = f"w1|v1|{latest['hash']}|gateway|paper"
    assert risk_snapshot_dedupe_key(latest) == key  # the queue standards' name for it
    rows = {row.worker: row.result for row in await hub.parts.store.worker_results(key)}
    assert rows["risk"]["breaches"][0]["id"] == f"strategy_{odd}"


async def test_valid_but_extreme_numbers_are_processed_and_never_block_the_outbox(hub: HubClient) -> None:
    """Integers beyond 64 bits, unpaired surrogates and weights of 1e308 are all valid. The
    workers copied some into their rows, which then failed the outcome transaction of the whole
    relay pass, so no event of any world was published again; and sums beyond float range made
    the workers raise. Now each world's event is processed, with None where a metric overflows."""
    big = 10**30
    bodies = {
        "w1": sample_snapshot(
            weights={"a": big, "b": -big, "c\ud800": 1},
            stress={"crash\ud800": {"max_drawdown": 10**20}},
            constraints={"max_weight": 2},
        ),
        "w2": sample_snapshot(
            weights={"x": 1e308, "y": -1e308, "z": 1.0},
            realized_returns={"x": [2.0, 0.1], "y": [0.0, 0.1], "z": [0.01, 0.02]},
            covariance={"x,x": 2.0, "z,z": 0.1},
            constraints={"max_gross": 3},
        ),
        "w3": sample_snapshot(),
        "w4": sample_snapshot(  # every portfolio return fits a float, their sum does not
            weights={"x": 1e308, "y": -1e308, "z": 1.0},
            realized_returns={"x": [1.0, 1.0], "y": [0.0, 0.0], "z": [0.0, 0.0]},
        ),
    }
    for world, body in bodies.items():
        assert (await hub.post(world, body)).status_code == 201
    await asyncio.wait_for(hub.drain(), 30)  # used to retry the failing pass forever
    assert (await hub.parts.store.outbox_backlog()).pending == 0
    rows = {}
    for world in bodies:
        assert hub.metric("risk_hub_snapshot_processed_total", world_id=world, stage="paper") == 1
        latest = (await hub.get(f"/risk-hub/worlds/{world}/snapshots/latest")).json()
        results = await hub.parts.store.worker_results(risk_snapshot_dedupe_key(latest))
        rows[world] = {row.worker: row.result for row in results}
    assert rows["w1"]["extended_validation"]["exposure"]["max_abs_weight"] == big
    assert rows["w1"]["risk"]["worst_stress"] == "crash\ud800"
    assert rows["w1"]["risk"]["figures"]["worst_stress_loss"] == 1e20
    assert {b["id"] for b in rows["w1"]["risk"]["breaches"]} == {"a", "b"}
    exposure = rows["w2"]["extended_validation"]["exposure"]
    assert (exposure["gross"], exposure["net"]) == (None, 1.0)
    assert rows["w2"]["risk"]["figures"]["realized_sigma"] is None  # 1e308 * 2.0 overflows
    # covariance misses y, 2 points are too few for Ledoit-Wolf: correlation 1, sum of |w_i| sigma_i,
    # 1e308 * (1.9 + 0.1) / sqrt(2) = sqrt(2) * 1e308 (still a float)
    assert rows["w2"]["risk"]["method"] == "fallback_corr1"
    assert rows["w2"]["risk"]["figures"]["sigma"] == pytest.approx(math.sqrt(2) * 1e308)
    (gross,) = rows["w2"]["risk"]["breaches"]
    assert (gross["metric"], gross["value"], gross["max"]) == ("gross", None, 3)
    assert rows["w3"]["risk"]["figures"]["realized_sigma"] is not None
    assert rows["w4"]["risk"]["figures"]["realized_sigma"] is None


async def test_a_part_whose_canonical_json_outgrows_the_body_is_still_offloaded(
    make_hub: Callable[..., Any],
) -> None:
    """Canonical JSON can be up to 6x the body's text (DEL is written \\u007f): a size guess
    from the body once kept such a part inline, over the threshold."""
    stress = {"\x7f" * 210: {"max_drawdown": 0.25}}
    body = {"as_of": "2025-01-01T00:00:00Z", "version": "v1", "weights": {"a": 1}, "stress": stress}
    async with make_hub(inline_cov_threshold=1000) as hub:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()  # DEL: one byte
        assert len(raw) * 3 < 1000 < len(json.dumps(stress, separators=(",", ":")))
        assert (await hub.post("w1", None, raw=raw)).status_code == 201
        stored = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
        assert stored["hub_offloaded"] == ["stress"] and "stress" not in stored
        expanded = (await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")).json()
        assert expanded["stress"] == body["stress"]


async def test_an_expanded_producer_ref_still_verifies_against_the_hash(hub: HubClient) -> None:
    """The answer holds the producer's ref (which the hash covers) and the part it resolved to."""
    ref = await hub.parts.blobs.put(b'{"crash":{"max_drawdown":0.3}}')
    body = sample_snapshot(stress=None, stress_ref=ref)
    assert (await hub.post("w1", body)).status_code == 201
    expanded = (await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")).json()
    assert expanded["stress"] == {"crash": {"max_drawdown": 0.3}} and expanded["stress_ref"] == ref
    assert verify_hash(expanded, lambda ref: None)
    view = {k: v for k, v in expanded.items() if k not in ("expired", "created_at", "hash", "stress")}
    assert snapshot_hash(view) == expanded["hash"]


async def test_a_stored_ref_to_a_blob_that_is_no_json_is_502_on_expand(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a ref is refused on write now; one accepted by an older version is the store's
    failure on read (502 blob_corrupted), not a 500."""
    ref = await hub.parts.blobs.put(b"not json")
    monkeypatch.setattr(hub_module, "check_referenced_part", lambda *args: None)
    assert (await hub.post("w1", sample_snapshot(stress=None, stress_ref=ref))).status_code == 201
    monkeypatch.undo()
    answer = await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "blob_corrupted"
    assert hub.metric("risk_hub_blob_errors_total", operation="get", kind="corrupted") == 1


async def test_a_snapshot_too_large_for_an_event_offloads_every_part_or_is_413(
    make_hub: Callable[..., Any],
) -> None:
    """The stored snapshot is its event's data, and Kafka refuses messages over ~1 MiB (the
    relay would retry such an event forever, holding its world's later events back)."""
    returns = {"strategy_a": [0.001] * 300, "strategy_b": [0.002] * 300}
    async with make_hub(max_event_bytes=3000) as hub:
        body = sample_snapshot(realized_returns=returns)
        assert len(canonical_json(returns)) > 3000
        assert (await hub.post("w1", body)).status_code == 201
        stored = await hub.parts.store.get_snapshot("w1", "v1")
        assert stored is not None and len(stored.payload) <= 3000
        served = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
        assert sorted(served["hub_offloaded"]) == ["realized_returns", "stress"]
        expanded = (await hub.get("/risk-hub/worlds/w1/snapshots/latest", expand="true")).json()
        assert expanded["realized_returns"] == returns and verify_hash(expanded, lambda ref: None)

        wide = {f"asset_{i:04d}": 1 / 200 for i in range(200)}
        answer = await hub.post("w2", sample_snapshot(weights=wide, realized_returns=None, stress=None))
        assert answer.status_code == 413 and answer.json()["error"]["field"] == "body"
        assert "RISKHUB_MAX_EVENT_BYTES" in answer.json()["error"]["message"]
        assert (await hub.get("/risk-hub/worlds/w2/snapshots/latest")).status_code == 404
