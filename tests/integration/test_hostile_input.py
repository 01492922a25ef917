"""Hostile input (DESIGN "Hostile input"), on embedded defaults and on PostgreSQL + Redis + S3:
each defect found by hostile testing gets a clean 4xx naming what is wrong, and nothing is stored."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from riskhub.bootstrap import build_components

from conftest import HubClient, httpx_json, hub_settings, sample_snapshot


def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def nothing_stored(hub: HubClient, world: str = "w1") -> bool:
    return (await hub.get(f"/risk-hub/worlds/{world}/snapshots")).json()["snapshots"] == []


async def test_nesting_deeper_than_64_is_400_at_every_depth_that_used_to_500(hub: HubClient) -> None:
    for depth in (65, 980, 1020, 5000):  # 960-1020 broke canonical JSON with a 500
        deep = b"[" * depth + b"]" * depth
        raw = httpx_json(sample_snapshot())[:-1] + b',"constraints":{"deep":' + deep + b"}}"
        response = await hub.post("w1", None, raw=raw)
        assert response.status_code == 400, (depth, response.text)
        assert error_of(response)["field"] == "body" and "deeper than 64" in error_of(response)["message"]
    nested = {"a": 1}
    for _ in range(62):  # 64 levels with the body itself and constraints: accepted
        nested = {"a": nested}
    assert (await hub.post("w1", sample_snapshot(constraints=nested))).status_code == 201


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"as_of":"2025-01-01T00:00:00Z","version":"v1","version":"v2","weights":{"a":1}}', "version"),
        (b'{"as_of":"2025-01-01T00:00:00Z","version":"v1","weights":{"a":0.5,"a":1}}', "a"),
        (b'{"as_of":"2025-01-01T00:00:00Z","version":"v1","weights":{"a":1},"x":{"k" :1,"k"\n:2}}', "k"),
    ],
    ids=["top-level", "weights", "white-space-before-colons"],
)
async def test_a_key_twice_in_one_object_is_400_naming_it(hub: HubClient, raw: bytes, field: str) -> None:
    response = await hub.post("w1", None, raw=raw)
    assert response.status_code == 400 and error_of(response)["field"] == field
    assert await nothing_stored(hub)


async def test_a_string_holding_a_quote_and_a_colon_is_no_duplicate(hub: HubClient) -> None:
    raw = httpx_json(sample_snapshot(note='he said "go": twice'))
    assert b'\\":' in raw
    assert (await hub.post("w1", None, raw=raw)).status_code == 201


async def test_an_as_of_in_the_future_is_422_and_never_becomes_latest(hub: HubClient) -> None:
    now = datetime.now(UTC)
    for as_of in ("9999-01-01T00:00:00Z", (now + timedelta(seconds=400)).isoformat()):
        response = await hub.post("w1", sample_snapshot(as_of=as_of, ttl_sec=1))
        assert (response.status_code, error_of(response)["field"]) == (422, "as_of")
    within_skew = (now + timedelta(seconds=120)).isoformat()
    assert (await hub.post("w1", sample_snapshot(as_of=within_skew))).status_code == 201


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provenance": {"actor": "a" * 900_000, "stage": "paper"}}, "provenance.actor"),
        ({"weights": {"x" * 257: 1.0}}, "weights"),
        ({"stress": {"s" * 257: {"loss": 0.1}}}, "stress"),
        ({"realized_returns": {"r" * 257: [0.1, 0.2]}}, "realized_returns"),
        ({"version": "v" * 257}, "version"),
    ],
    ids=["actor-900KB", "weight-id", "scenario-name", "series-id", "version"],
)
async def test_ids_and_text_over_256_characters_are_422_naming_the_field(
    hub: HubClient, changes: dict[str, Any], field: str
) -> None:
    response = await hub.post("w1", sample_snapshot(**changes), actor=None, stage=None)
    assert (response.status_code, error_of(response)["field"]) == (422, field)
    assert len(response.content) < 2000  # the answer does not echo the value
    assert await nothing_stored(hub)


async def test_an_actor_header_over_256_characters_is_422(hub: HubClient) -> None:
    body = sample_snapshot()
    body.pop("provenance")
    response = await hub.post("w1", body, actor="a" * 300)
    assert (response.status_code, error_of(response)["field"]) == (422, "provenance.actor")


async def test_a_huge_world_id_mismatch_is_echoed_neither_to_the_client_nor_to_the_log(
    hub: HubClient, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "w" * 1_000_000
    with caplog.at_level(logging.INFO):
        response = await hub.post("w1", sample_snapshot(world_id=huge))
    assert (response.status_code, error_of(response)["field"]) == (400, "world_id")
    assert len(response.content) < 2000
    assert sum(len(record.getMessage()) for record in caplog.records) < 10_000


async def test_a_header_block_over_16_kb_is_431_without_logging_it(
    hub: HubClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await hub.post("w1", sample_snapshot(), token="not-a-token", actor="x" * 20_000)
    assert (response.status_code, error_of(response)["code"]) == (431, "headers_too_large")
    assert "x" * 300 not in caplog.text
    assert await nothing_stored(hub)


async def test_an_over_long_correlation_id_is_400_and_a_short_one_is_echoed(hub: HubClient) -> None:
    long_id = await hub.post("w1", sample_snapshot(), headers={"x-correlation-id": "c" * 257})
    assert (long_id.status_code, error_of(long_id)["field"]) == (400, "X-Correlation-Id")
    fine = await hub.post("w1", sample_snapshot(), headers={"x-correlation-id": "c-1"})
    assert fine.status_code == 201 and fine.headers["x-correlation-id"] == "c-1"
    generated = await hub.get("/risk-hub/worlds/w1/snapshots/latest")
    assert len(generated.headers["x-correlation-id"]) == 32


async def test_json_numbers_still_parse_exactly_after_the_shape_checks(hub: HubClient) -> None:
    body = sample_snapshot(constraints={"big": 10**30, "f": 0.1})
    assert (await hub.post("w1", body)).status_code == 201
    stored = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).content
    assert json.loads(stored)["constraints"] == {"big": 10**30, "f": 0.1}


async def test_temp_files_of_blob_writes_killed_half_way_are_swept_at_start(tmp_path: Path) -> None:
    """kill -9 between a blob's write and its rename left `.tmp-*` files for good; the embedded
    hub sweeps those older than an hour when it starts, and leaves younger ones (a write of another
    process may still be running)."""
    root = tmp_path / "data" / "blobs"
    root.mkdir(parents=True)
    stale, fresh = root / ".tmp-abc", root / ".tmp-def"
    stale.write_bytes(b'{"half":')
    fresh.write_bytes(b'{"half":')
    old = time.time() - 7200
    os.utime(stale, (old, old))
    parts = build_components(hub_settings(tmp_path))
    await parts.start(background=False)
    try:
        assert not stale.exists() and fresh.exists()
    finally:
        await parts.stop()
