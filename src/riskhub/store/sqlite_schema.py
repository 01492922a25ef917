"""The SQLite schema of the embedded store: migrations, the snapshot row and its record."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from riskhub.model import StoredSnapshot, us_from_utc, utc_from_us

T = TypeVar("T")

# Applied in order at start; a migration is never edited once released, only appended.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE risk_snapshots (
                world_id TEXT NOT NULL,
                version TEXT NOT NULL,
                hash TEXT NOT NULL,
                content_sha256 TEXT NOT NULL,
                as_of_us INTEGER NOT NULL,
                created_at_us INTEGER NOT NULL,
                expires_at_us INTEGER NOT NULL,
                actor TEXT NOT NULL,
                stage TEXT,
                payload BLOB NOT NULL,
                UNIQUE (world_id, version)
            )""",
            "CREATE INDEX risk_snapshots_latest ON risk_snapshots"
            " (world_id, as_of_us DESC, created_at_us DESC)",
            "CREATE INDEX risk_snapshots_stage ON risk_snapshots"
            " (world_id, stage, as_of_us DESC, created_at_us DESC)",
            "CREATE INDEX risk_snapshots_actor ON risk_snapshots"
            " (world_id, actor, as_of_us DESC, created_at_us DESC)",
            """CREATE TABLE risk_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                world_id TEXT NOT NULL,
                version TEXT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                correlation_id TEXT,
                extra BLOB NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                created_at_us INTEGER NOT NULL,
                published_at_us INTEGER
            )""",
            "CREATE INDEX risk_outbox_pending ON risk_outbox (id) WHERE status = 'pending'",
            """CREATE TABLE risk_processed (
                dedupe_key TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                processed_at_us INTEGER NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE risk_worker_results (
                dedupe_key TEXT NOT NULL,
                worker TEXT NOT NULL,
                result BLOB NOT NULL,
                PRIMARY KEY (dedupe_key, worker)
            ) WITHOUT ROWID""",
        ],
    ),
    (
        # Risk analytics: why a key was dead-lettered (the results API says), and outbox rows
        # that carry their own data (a limit breach) instead of referencing a snapshot's.
        2,
        [
            "ALTER TABLE risk_processed ADD COLUMN error TEXT",
            "ALTER TABLE risk_outbox ADD COLUMN data BLOB",
        ],
    ),
    (
        # Retracted versions stay stored and listed, never served as latest.
        3,
        [
            """CREATE TABLE risk_retractions (
                world_id TEXT NOT NULL,
                version TEXT NOT NULL,
                reason TEXT NOT NULL,
                retracted_at_us INTEGER NOT NULL,
                PRIMARY KEY (world_id, version)
            ) WITHOUT ROWID""",
        ],
    ),
]

# Appended to a query on risk_snapshots: leave out retracted versions.
NOT_RETRACTED = (
    " AND NOT EXISTS (SELECT 1 FROM risk_retractions x"
    " WHERE x.world_id = risk_snapshots.world_id AND x.version = risk_snapshots.version)"
)


def in_transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """Run ``work`` in one write transaction (BEGIN IMMEDIATE: the write lock is taken up front)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def applied_migrations(conn: sqlite3.Connection) -> list[int]:
    """The versions in ``schema_migrations``, without creating it."""
    known = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    if conn.execute(known).fetchone() is None:
        return []
    return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations not yet applied, each in its own transaction.

    Several processes may open one file at once (``serve --workers N``): each migration is
    checked again under the write lock, so the process that waited for another's migration
    skips it instead of failing on "table already exists"."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at_us INTEGER NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, statements in MIGRATIONS:
        if version in applied:
            continue

        def apply(version: int = version, statements: list[str] = statements) -> None:
            done = "SELECT 1 FROM schema_migrations WHERE version = ?"
            if conn.execute(done, [version]).fetchone() is not None:
                return
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at_us) VALUES (?, ?)",
                [version, now_us()],
            )

        in_transaction(conn, apply)


# The status page's one query: per world and stage the newest ``?2`` snapshots (a window over the
# stage index), each joined to its outcome and the risk worker's row (``?1``) by its dedupe key.
STATUS_POINTS = (
    """
WITH ranked AS (
    SELECT world_id, stage, version, hash, actor, as_of_us, created_at_us, expires_at_us,
           ROW_NUMBER() OVER (PARTITION BY world_id, stage ORDER BY as_of_us DESC, created_at_us DESC) AS n
    FROM risk_snapshots WHERE TRUE"""
    + NOT_RETRACTED
    + """
)
SELECT k.world_id, k.stage, k.n, k.version, k.as_of_us, k.created_at_us, k.expires_at_us, p.outcome,
       json_extract(r.result, '$.figures.sigma'),
       CASE WHEN k.n = 1 THEN json_object('figures', json_extract(r.result, '$.figures'),
           'worst_stress', json_extract(r.result, '$.worst_stress'),
           'blocking', json_extract(r.result, '$.blocking'),
           'breaches', json_array_length(r.result, '$.breaches')) END
FROM ranked k
LEFT JOIN risk_processed p
       ON p.dedupe_key = k.world_id || '|' || k.version || '|' || k.hash || '|' || k.actor || '|'
                         || coalesce(k.stage, '')
LEFT JOIN risk_worker_results r ON r.dedupe_key = p.dedupe_key AND r.worker = ?1
WHERE k.n <= ?2
ORDER BY k.world_id, k.stage, k.n
"""
)

SNAPSHOT_COLUMNS = (
    "world_id, version, hash, content_sha256, as_of_us, created_at_us, expires_at_us, actor, stage, payload"
)


def now_us() -> int:
    """The clock, as the store writes it: epoch microseconds."""
    return us_from_utc(datetime.now(UTC))


def snapshot_of(row: tuple[Any, ...]) -> StoredSnapshot:
    """A row of ``SNAPSHOT_COLUMNS`` as the record it stores."""
    return StoredSnapshot(
        world_id=row[0],
        version=row[1],
        hash=row[2],
        content_sha256=row[3],
        as_of=utc_from_us(row[4]),
        created_at=utc_from_us(row[5]),
        expires_at=utc_from_us(row[6]),
        actor=row[7],
        stage=row[8],
        payload=bytes(row[9]),
    )
