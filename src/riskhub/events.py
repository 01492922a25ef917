"""One home for the ControlBus events the hub emits: their types, identity and data (pure).

An event's id derives from its idempotency key, so an event sent again is the same event. Its own
fields (``event_version``, ``idempotency_key``) are merged into the data and are never part of the
snapshot hash. Building the wire envelope (CloudEvents) is ``bus.codec``'s job.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from riskhub.contract.canonical import dumps_compact, merge_objects
from riskhub.model import NewOutboxEvent, StoredSnapshot

SNAPSHOT_UPDATED: Final = "risk_snapshot_updated"
SNAPSHOT_UPDATED_DLQ: Final = "risk_snapshot_updated_dlq"
LIMIT_BREACHED: Final = "risk_limit_breached"
SNAPSHOT_RETRACTED: Final = "risk_snapshot_retracted"
EVENT_VERSION: Final = 1
# uuid5 namespace for event ids: an event's id is derived from its idempotency key.
_EVENT_NAMESPACE: Final = uuid.UUID("6f1d3c2e-4b1a-5e9f-9c47-2a8d1e0b7c55")


def event_id_for(idempotency_key: str) -> str:
    """Stable CloudEvent id: a re-sent event keeps its id."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, idempotency_key))


def event_fields(idempotency_key: str) -> bytes:
    """The event's own fields (never part of the snapshot hash), as a JSON object."""
    return dumps_compact({"event_version": EVENT_VERSION, "idempotency_key": idempotency_key})


def snapshot_event(
    world_id: str, version: str, dedupe_key: str, correlation_id: str | None = None
) -> NewOutboxEvent:
    """The outbox event announcing a stored snapshot. The row references the snapshot (the relay
    joins its payload back in); id and idempotency key derive from the dedupe key."""
    return NewOutboxEvent(
        world_id,
        version,
        event_id_for(dedupe_key),
        SNAPSHOT_UPDATED,
        correlation_id,
        event_fields(dedupe_key),
    )


def event_data(payload: bytes, extra: bytes) -> bytes:
    """The CloudEvent data: the stored snapshot's JSON object with the event fields added."""
    return merge_objects(payload, extra)


def breach_event(
    snapshot: Mapping[str, Any], breach: Mapping[str, Any], correlation_id: str | None
) -> NewOutboxEvent:
    """The ``risk_limit_breached`` event of one metric of a stored snapshot (its event data):
    its idempotency key ``world|version|hash|metric`` makes a re-sent one the same event."""
    world_id, version, hash_ = (str(snapshot.get(name, "")) for name in ("world_id", "version", "hash"))
    key = f"{world_id}|{version}|{hash_}|{breach['metric']}"
    provenance = snapshot.get("provenance") or {}
    data = {
        "world_id": world_id,
        "version": version,
        "stage": provenance.get("stage"),
        "actor": provenance.get("actor"),
        "hash": hash_,
        "metric": breach["metric"],
        "value": breach["value"],
        "max": breach["max"],
        "severity": breach["severity"],
        "event_version": EVENT_VERSION,
        "idempotency_key": key,
    }
    return NewOutboxEvent(
        world_id=world_id,
        version=version,
        event_id=event_id_for(key),
        event_type=LIMIT_BREACHED,
        correlation_id=correlation_id,
        extra=b"{}",
        data=dumps_compact(data),
    )


def retraction_event(
    snapshot: StoredSnapshot, reason: str, at: str, correlation_id: str | None = None
) -> NewOutboxEvent:
    """The ``risk_snapshot_retracted`` event of a stored version (key ``world|version|hash|retracted``)."""
    key = f"{snapshot.world_id}|{snapshot.version}|{snapshot.hash}|retracted"
    data = {
        "world_id": snapshot.world_id,
        "version": snapshot.version,
        "stage": snapshot.stage,
        "actor": snapshot.actor,
        "hash": snapshot.hash,
        "reason": reason,
        "retracted_at": at,
        "event_version": EVENT_VERSION,
        "idempotency_key": key,
    }
    event_id = event_id_for(key)
    extra = b"{}"
    return NewOutboxEvent(
        snapshot.world_id,
        snapshot.version,
        event_id,
        SNAPSHOT_RETRACTED,
        correlation_id,
        extra,
        dumps_compact(data),
    )
