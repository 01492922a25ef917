"""The PostgreSQL store's write statements (its transactions are opened in ``postgres.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from riskhub.model import InsertResult, NewOutboxEvent, Outcome, StoredSnapshot
from riskhub.store.pg_outbox import NOTIFY_CHANNEL, WRITE_LOCK


def distinct_key_runs(outcomes: Sequence[Outcome]) -> list[list[Outcome]]:
    """Consecutive runs without a repeated key (one INSERT may not touch a row twice)."""
    runs: list[list[Outcome]] = [[]]
    keys: set[str] = set()
    for outcome in outcomes:
        if outcome.dedupe_key in keys:
            runs.append([])
            keys.clear()
        runs[-1].append(outcome)
        keys.add(outcome.dedupe_key)
    return [run for run in runs if run]


async def insert_snapshot(
    conn: asyncpg.Connection, snap: StoredSnapshot, event: NewOutboxEvent
) -> InsertResult:
    """The snapshot and its outbox row in one round trip (the ``risk_insert_snapshot`` function)."""
    row = await conn.fetchrow(
        "SELECT * FROM risk_insert_snapshot($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        WRITE_LOCK,
        NOTIFY_CHANNEL,
        snap.world_id,
        snap.version,
        snap.hash,
        snap.content_sha256,
        snap.as_of,
        snap.created_at,
        snap.expires_at,
        snap.actor,
        snap.stage,
        snap.payload,
        event.event_id,
        event.event_type,
        event.correlation_id,
        event.extra.decode(),
    )
    if not row["created"]:
        return InsertResult(created=False, snapshot=snapshot_of(tuple(row)[1:11]))
    scopes: list[str | None] = [None] if row["newest_in_world"] else []
    if snap.stage is not None and row["newest_in_stage"]:
        scopes.append(snap.stage)
    return InsertResult(created=True, snapshot=snap, newest_in=tuple(scopes))


def snapshot_of(row: asyncpg.Record | tuple[Any, ...]) -> StoredSnapshot:
    """A row of the snapshot columns as the record it stores."""
    return StoredSnapshot(
        world_id=row[0],
        version=row[1],
        hash=row[2],
        content_sha256=row[3],
        as_of=row[4],
        created_at=row[5],
        expires_at=row[6],
        actor=row[7],
        stage=row[8],
        payload=bytes(row[9]),
    )
