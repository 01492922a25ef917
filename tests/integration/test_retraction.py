"""Retracting a version: it stays stored and listed (marked), is never served as latest again,
and one `risk_snapshot_retracted` event goes out; on embedded defaults and on PostgreSQL + Redis."""

from __future__ import annotations

from typing import Any

from riskhub.contract import verify_hash
from riskhub.contract.canonical import loads_exact
from riskhub.events import SNAPSHOT_RETRACTED, event_id_for

from conftest import READ_TOKEN, HubClient, sample_snapshot


async def retract(hub: HubClient, world: str, version: str, reason: str = "bad weights") -> Any:
    """POST a retraction with the hub's read-write token."""
    token = hub.parts.settings.tokens[0].get_secret_value()
    return await hub.client.post(
        f"/risk-hub/worlds/{world}/snapshots/retractions",
        json={"version": version, "reason": reason},
        headers={"authorization": f"Bearer {token}"},
    )


async def test_a_retracted_version_is_never_latest_but_stays_listed(hub: HubClient) -> None:
    old = sample_snapshot(version="v1", as_of="2025-01-01T00:00:00Z", ttl_sec=3600)
    bad = sample_snapshot(version="v2", as_of="2025-01-02T00:00:00Z", ttl_sec=3600)
    assert (await hub.post("w1", old)).status_code == 201
    assert (await hub.post("w1", bad)).status_code == 201
    assert (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()["version"] == "v2"  # cached
    answer = await retract(hub, "w1", "v2")
    assert answer.status_code == 201 and answer.json()["retracted"] is True
    latest = await hub.get("/risk-hub/worlds/w1/snapshots/latest")
    assert latest.json()["version"] == "v1"
    assert (await hub.get("/risk-hub/worlds/w1/snapshots/latest", stage="paper")).json()["version"] == "v1"
    listed = (await hub.get("/risk-hub/worlds/w1/snapshots")).json()["snapshots"]
    assert [s["version"] for s in listed] == ["v2", "v1"]
    assert listed[0]["retracted"]["reason"] == "bad weights" and "retracted" not in listed[1]
    looked_up = (await hub.get("/risk-hub/worlds/w1/snapshots/lookup", version="v2")).json()
    assert looked_up["retracted"]["reason"] == "bad weights"
    assert verify_hash(looked_up, lambda ref: None)  # "retracted" is a server field, never hashed
    expanded = (await hub.get("/risk-hub/worlds/w1/snapshots/lookup", version="v2", expand="true")).json()
    assert expanded["retracted"]["reason"] == "bad weights"
    assert (await hub.get("/risk-hub/worlds/w1/risk/latest")).json()["version"] == "v1"


async def test_the_retraction_is_announced_once(hub: HubClient) -> None:
    assert (await hub.post("w1", sample_snapshot(ttl_sec=3600))).status_code == 201
    stored = (await hub.get("/risk-hub/worlds/w1/snapshots/latest")).json()
    assert (await retract(hub, "w1", "v1", "stale prices")).status_code == 201
    again = await retract(hub, "w1", "v1", "stale prices")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "version_conflict")
    await hub.drain()
    records = hub.parts.memory_bus.recent(hub.parts.settings.controlbus_topic)  # type: ignore[union-attr]
    events = [loads_exact(r.value) for r in records if b"risk_snapshot_retracted" in r.value]
    assert len(events) == 1
    key = f"w1|v1|{stored['hash']}|retracted"
    (event,) = events
    assert (event["type"], event["id"]) == (SNAPSHOT_RETRACTED, event_id_for(key))
    assert event["data"]["reason"] == "stale prices" and event["data"]["idempotency_key"] == key


async def test_a_retraction_needs_a_write_token_and_an_existing_version(hub: HubClient) -> None:
    read_only = await hub.client.post(
        "/risk-hub/worlds/w1/snapshots/retractions",
        json={"version": "v1", "reason": "x"},
        headers={"authorization": f"Bearer {READ_TOKEN}"},
    )
    assert read_only.status_code == 403
    assert (await retract(hub, "w1", "nope")).status_code == 404
    assert (await hub.post("w1", sample_snapshot(ttl_sec=3600))).status_code == 201
    empty = await retract(hub, "w1", "v1", reason=" ")
    assert (empty.status_code, empty.json()["error"]["field"]) == (422, "reason")
