"""What the soak finds at the end, read straight from the parts: the PostgreSQL tables
(risk_snapshots, risk_outbox, risk_processed, risk_worker_results), both topics and the S3 prefix."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aioboto3
import asyncpg

from riskhub.bus.kafka import read_topic
from riskhub.contract import OFFLOADABLE_PARTS
from riskhub.events import LIMIT_BREACHED, SNAPSHOT_UPDATED

from soak.bodies import ref_address
from soak.topology import BLOB_PREFIX, BUCKET, TOPIC, Topology


@dataclass(frozen=True)
class Row:
    """A stored snapshot: its identity, expiry and the blobs it references."""

    world: str
    version: str
    hash: str
    actor: str
    stage: str
    expires_at: datetime
    blobs: frozenset[str]

    @property
    def key(self) -> str:
        """Its dedupe key (``world|version|hash|actor|stage``), as the consumer records it."""
        return f"{self.world}|{self.version}|{self.hash}|{self.actor}|{self.stage}"


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row (a snapshot's event, or a limit breach the consumer announced)."""

    id: int
    world: str
    version: str
    event_type: str
    event_id: str
    published: bool


@dataclass
class Facts:
    """Everything the ledger is computed from."""

    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    outcomes: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # key -> (outcome, at)
    worker_rows: list[tuple[str, str]] = field(default_factory=list)  # (key, worker), as stored
    breaches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> risk row's breaches
    topic: list[tuple[str, str]] = field(default_factory=list)  # (type, id) of each record
    dlq_keys: list[str] = field(default_factory=list)  # idempotency key of each DLQ record's original
    blobs: set[str] = field(default_factory=set)  # content addresses in the S3 prefix


async def read_facts(topology: Topology) -> Facts:
    """Read every table, topic and the blob prefix."""
    facts = Facts()
    conn = await asyncpg.connect(topology.postgres.dsn)
    try:
        await _read_tables(conn, facts)
    finally:
        await conn.close()
    bootstrap = topology.kafka.bootstrap
    records, dlq = await asyncio.gather(
        asyncio.wait_for(read_topic(bootstrap, TOPIC), 120),
        asyncio.wait_for(read_topic(bootstrap, topology.dlq_topic), 60),
    )
    for record in records:
        envelope = json.loads(record.value)
        facts.topic.append((envelope["type"], envelope["id"]))
    facts.dlq_keys = [_original_key(json.loads(record.value)) for record in dlq]
    facts.blobs = await _blob_addresses(topology)
    return facts


async def _read_tables(conn: asyncpg.Connection, facts: Facts) -> None:
    rows = await conn.fetch(
        "SELECT world_id, version, hash, actor, coalesce(stage, ''), expires_at, payload FROM risk_snapshots"
    )
    for world, version, hash_, actor, stage, expires_at, payload in rows:
        document = json.loads(bytes(payload))
        refs = (document.get(f"{part}_ref") for part in OFFLOADABLE_PARTS)
        blobs = frozenset(ref_address(ref) for ref in refs if isinstance(ref, str))
        facts.rows[(world, version)] = Row(world, version, hash_, actor, stage, expires_at, blobs)
    outbox = await conn.fetch(
        "SELECT id, world_id, version, event_type, event_id, status = 'published' FROM risk_outbox"
        " WHERE event_type IN ($1, $2) ORDER BY id",
        SNAPSHOT_UPDATED,
        LIMIT_BREACHED,
    )
    facts.outbox = [OutboxRow(*row) for row in outbox]
    outcomes = await conn.fetch("SELECT dedupe_key, outcome, processed_at FROM risk_processed")
    facts.outcomes = {key: (outcome, at) for key, outcome, at in outcomes}
    worker_rows = await conn.fetch(
        "SELECT dedupe_key, worker, CASE WHEN worker = 'risk'"
        " THEN (result::jsonb -> 'breaches')::text END FROM risk_worker_results"
    )
    for key, worker, breaches in worker_rows:
        facts.worker_rows.append((key, worker))
        if breaches is not None:
            facts.breaches[key] = json.loads(breaches) or []


def _original_key(envelope: dict[str, Any]) -> str:
    original = envelope.get("data", {}).get("original_event") or {}
    key = (original.get("data") or {}).get("idempotency_key")
    return key if isinstance(key, str) else "<undecodable>"


async def _blob_addresses(topology: Topology) -> set[str]:
    addresses: set[str] = set()
    svc = topology.s3
    session = aioboto3.Session(aws_access_key_id=svc.access_key, aws_secret_access_key=svc.secret_key)
    async with session.client("s3", endpoint_url=svc.endpoint_url, region_name=svc.region) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{BLOB_PREFIX}/"):
            addresses.update(ref_address(item["Key"]) for item in page.get("Contents", []))
    return addresses
