"""The SQLite store's write transactions, run on its one thread (``store/sqlite.py``).

Each function runs inside a transaction its caller opened (``in_transaction``): a snapshot row
with its outbox row, or a batch of consumer outcomes with the workers' rows and the events those
announce. Either all of it commits or none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from riskhub.model import (
    OUTCOME_PROCESSED,
    InsertResult,
    NewOutboxEvent,
    Outcome,
    StoredSnapshot,
    us_from_utc,
)
from riskhub.store.sqlite_schema import SNAPSHOT_COLUMNS, in_transaction, now_us, snapshot_of


def insert_batch(
    conn: sqlite3.Connection, items: list[tuple[StoredSnapshot, NewOutboxEvent]]
) -> list[InsertResult]:
    """Several snapshots (group commit), each with its outbox row, in one transaction."""
    return in_transaction(conn, lambda: [_insert_snapshot(conn, snap, event) for snap, event in items])


def _insert_snapshot(conn: sqlite3.Connection, snap: StoredSnapshot, event: NewOutboxEvent) -> InsertResult:
    """The snapshot row and, if it is new, its outbox row."""
    inserted = conn.execute(
        f"INSERT INTO risk_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (world_id, version) DO NOTHING",
        [
            snap.world_id,
            snap.version,
            snap.hash,
            snap.content_sha256,
            us_from_utc(snap.as_of),
            us_from_utc(snap.created_at),
            us_from_utc(snap.expires_at),
            snap.actor,
            snap.stage,
            snap.payload,
        ],
    ).rowcount
    if inserted:
        insert_event(conn, event, us_from_utc(snap.created_at))
        return InsertResult(created=True, snapshot=snap, newest_in=_newest_in(conn, snap))
    row = conn.execute(
        f"SELECT {SNAPSHOT_COLUMNS} FROM risk_snapshots WHERE world_id = ? AND version = ?",
        [snap.world_id, snap.version],
    ).fetchone()
    return InsertResult(created=False, snapshot=snapshot_of(row))


def insert_event(conn: sqlite3.Connection, event: NewOutboxEvent, created_at_us: int) -> None:
    """One outbox row (pending)."""
    conn.execute(
        "INSERT INTO risk_outbox (world_id, version, event_id, event_type, correlation_id, extra,"
        " data, created_at_us) VALUES (?,?,?,?,?,?,?,?)",
        [
            event.world_id,
            event.version,
            event.event_id,
            event.event_type,
            event.correlation_id,
            event.extra,
            event.data,
            created_at_us,
        ],
    )


def _newest_in(conn: sqlite3.Connection, snap: StoredSnapshot) -> tuple[str | None, ...]:
    rank = [us_from_utc(snap.as_of), us_from_utc(snap.created_at)]
    newer = "SELECT 1 FROM risk_snapshots WHERE world_id = ? AND (as_of_us, created_at_us) > (?, ?)"
    scopes: list[str | None] = []
    if conn.execute(newer, [snap.world_id, *rank]).fetchone() is None:
        scopes.append(None)
    if snap.stage is not None and (
        conn.execute(f"{newer} AND stage = ?", [snap.world_id, *rank, snap.stage]).fetchone() is None
    ):
        scopes.append(snap.stage)
    return tuple(scopes)


def record_outcomes(conn: sqlite3.Connection, outcomes: Sequence[Outcome]) -> list[bool]:
    """In order (a key may come twice: ``dlq``, then ``processed``): each key not yet processed
    gets its outcome, its workers' rows and their events' outbox rows."""
    recorded: list[bool] = []
    now = now_us()
    for item in outcomes:
        previous = conn.execute(
            "SELECT outcome FROM risk_processed WHERE dedupe_key = ?", [item.dedupe_key]
        ).fetchone()
        if previous is not None and previous[0] == OUTCOME_PROCESSED:
            recorded.append(False)
            continue
        conn.execute(
            "INSERT INTO risk_processed (dedupe_key, outcome, processed_at_us, error) VALUES (?,?,?,?)"
            " ON CONFLICT (dedupe_key) DO UPDATE SET outcome = excluded.outcome,"
            " processed_at_us = excluded.processed_at_us, error = excluded.error",
            [item.dedupe_key, item.outcome, now, item.error],
        )
        conn.executemany(
            "INSERT INTO risk_worker_results (dedupe_key, worker, result) VALUES (?,?,?)"
            " ON CONFLICT (dedupe_key, worker) DO UPDATE SET result = excluded.result",
            [(item.dedupe_key, row.worker, row.encoded) for row in item.results],
        )
        for event in item.events:
            insert_event(conn, event, now)
        recorded.append(True)
    return recorded
