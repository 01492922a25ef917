"""The transactional outbox on PostgreSQL: enqueueing, and the relay's claim of whole worlds.

A relay claims the worlds of the oldest pending rows with a try-lock (namespace ``RELAY_LOCK``)
held for its pass's transaction and takes each world's pending rows in id order; the marks it
makes commit with the pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from riskhub.events import event_data
from riskhub.model import NewOutboxEvent, OutboxEvent

NOTIFY_CHANNEL = "risk_outbox"
WRITE_LOCK, RELAY_LOCK = 7301, 7302  # advisory lock namespaces (first key of the pair)


class OutboxPass:
    """A relay pass: marks go into the claiming transaction."""

    def __init__(self, conn: asyncpg.Connection, events: list[OutboxEvent]) -> None:
        self._conn, self.events = conn, events

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Mark events sent (committed with the pass)."""
        if ids:
            await self._conn.execute(
                "UPDATE risk_outbox SET status = 'published', published_at = now(),"
                " attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
                list(ids),
            )

    async def mark_failed(self, event_id: int, error: str) -> None:
        """Count a failed attempt; the event stays pending."""
        await self._conn.execute(
            "UPDATE risk_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            event_id,
            error[:2000],
        )


async def claim(conn: asyncpg.Connection, limit: int) -> list[OutboxEvent]:
    # The worlds of the oldest `limit` pending rows, try-locked in one statement (a relay that
    # loses a world's lock skips the world for this pass).
    worlds = await conn.fetch(
        "WITH head AS (SELECT id, world_id FROM risk_outbox WHERE status = 'pending'"
        "   ORDER BY id LIMIT $1),"
        " worlds AS (SELECT world_id, min(id) AS first_id FROM head GROUP BY world_id)"
        " SELECT world_id FROM worlds WHERE pg_try_advisory_xact_lock($2, hashtext(world_id))"
        " ORDER BY first_id",
        limit,
        RELAY_LOCK,
    )
    locked = [row[0] for row in worlds]
    if not locked:
        return []
    rows = await conn.fetch(
        # Rows are picked (and locked) first; only then are the payloads joined and rendered.
        "SELECT o.id, o.world_id, o.event_id, o.event_type, o.correlation_id, o.created_at,"
        " s.payload, o.extra, o.attempts, o.data FROM"
        " (SELECT * FROM risk_outbox WHERE status = 'pending' AND world_id = ANY($1::text[])"
        "   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) o"
        " LEFT JOIN risk_snapshots s ON s.world_id = o.world_id AND s.version = o.version"
        " ORDER BY o.id",
        locked,
        limit,
    )
    return [
        OutboxEvent(
            id=row[0],
            world_id=row[1],
            event_id=row[2],
            event_type=row[3],
            correlation_id=row[4],
            created_at=row[5],
            data=bytes(row[9]) if row[9] is not None else event_data(bytes(row[6]), row[7].encode()),
            attempts=row[8],
        )
        for row in rows
    ]


async def insert_events(
    conn: asyncpg.Connection, events: Sequence[NewOutboxEvent], created_at: datetime
) -> None:
    """Outbox rows inside the caller's transaction. Each world's write lock is taken first, in
    one order (so two transactions never wait on each other's): a world's ids are then drawn in
    commit order, as the relay needs, and relays wake on the NOTIFY at commit."""
    for world_id in sorted({event.world_id for event in events}):
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", WRITE_LOCK, world_id)
    await conn.executemany(
        "INSERT INTO risk_outbox (world_id, version, event_id, event_type, correlation_id, extra,"
        " data, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        [
            (
                e.world_id,
                e.version,
                e.event_id,
                e.event_type,
                e.correlation_id,
                e.extra.decode(),
                e.data,
                created_at,
            )
            for e in events
        ],
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
