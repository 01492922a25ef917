"""The PostgreSQL store's reads for the results API and the status page, one query each."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from riskhub.contract.canonical import loads_exact
from riskhub.model import OUTCOME_DLQ, RiskRecord, StatusPoint
from riskhub.risk.results import RISK_WORKER
from riskhub.store.pg_schema import STATUS_POINTS


async def retractions(
    conn: asyncpg.Connection, world_id: str, versions: list[str]
) -> dict[str, tuple[str, datetime]]:
    """Reason and time of each retracted version among ``versions``."""
    rows = await conn.fetch(
        "SELECT version, reason, retracted_at FROM risk_retractions"
        " WHERE world_id = $1 AND version = ANY($2::text[])",
        world_id,
        versions,
    )
    return {version: (reason, at) for version, reason, at in rows}


async def status_points(conn: asyncpg.Connection, points: int) -> list[StatusPoint]:
    """Per world and stage, its newest snapshots with outcome and sigma."""
    rows = await conn.fetch(STATUS_POINTS, RISK_WORKER, points)
    return [
        StatusPoint(
            world,
            stage,
            rank,
            version,
            as_of,
            created_at,
            expires_at,
            outcome,
            sigma,
            None if result is None else orjson.loads(result),
        )
        for world, stage, rank, version, as_of, created_at, expires_at, outcome, sigma, result in rows
    ]


async def recent_failures(conn: asyncpg.Connection, limit: int) -> list[RiskRecord]:
    """The newest dead-lettered keys, with their error."""
    rows = await conn.fetch(
        "SELECT dedupe_key, outcome, processed_at, error FROM risk_processed"
        " WHERE outcome = $1 ORDER BY processed_at DESC LIMIT $2",
        OUTCOME_DLQ,
        limit,
    )
    return [RiskRecord(key, outcome, at, error, None) for key, outcome, at, error in rows]


async def risk_records(conn: asyncpg.Connection, keys: list[str], worker: str) -> dict[str, RiskRecord]:
    """The recorded outcome of each key that has one, with ``worker``'s row."""
    rows = await conn.fetch(
        "SELECT p.dedupe_key, p.outcome, p.processed_at, p.error, r.result"
        " FROM risk_processed p LEFT JOIN risk_worker_results r"
        " ON r.dedupe_key = p.dedupe_key AND r.worker = $2"
        " WHERE p.dedupe_key = ANY($1::text[])",
        keys,
        worker,
    )
    return {
        key: RiskRecord(key, outcome, at, error, None if result is None else loads_exact(result))
        for key, outcome, at, error, result in rows
    }
