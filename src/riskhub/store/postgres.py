"""Production store: PostgreSQL through an asyncpg pool, safe with several hub replicas.

Ordering across replicas, the subtle part:
* Sequence values commit out of order: writer A takes outbox id 100, writer B id 101, B commits
  first. A relay reading "pending rows of world W by id" could then publish 101 before 100.
  So writers of one world serialize on an advisory lock (namespace WRITE) taken BEFORE the
  outbox id is drawn: per world, ids are handed out in commit order.
* Relays claim whole worlds with a try-lock (namespace RELAY) held for the pass's transaction,
  and take the world's pending rows in id order (``FOR UPDATE SKIP LOCKED``). A world is thus
  published by one relay at a time, as a prefix of its pending rows; writers never wait for a
  relay (different namespace).
* Writers ``NOTIFY risk_outbox`` in their transaction, so relays wake within milliseconds of a
  commit instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg

from riskhub.config import DATABASE_POOL_SIZE
from riskhub.contract.canonical import loads_exact
from riskhub.errors import StoreUnavailable, translated
from riskhub.model import (
    InsertResult,
    NewOutboxEvent,
    OutboxBacklog,
    Outcome,
    RiskRecord,
    StatusPoint,
    StoredSnapshot,
    WorkerResult,
    same_content_or_conflict,
)
from riskhub.store import SchemaVersions, pg_reads
from riskhub.store.pg_outbox import NOTIFY_CHANNEL, OutboxPass, claim, insert_events
from riskhub.store.pg_schema import MIGRATIONS, NOT_RETRACTED, RECORD_OUTCOMES
from riskhub.store.pg_writes import distinct_key_runs, insert_snapshot, snapshot_of

T = TypeVar("T")
MIGRATION_LOCK = 7300
RELISTEN_INTERVAL_S = 1.0


_SNAPSHOT_COLUMNS = (
    "world_id, version, hash, content_sha256, as_of, created_at, expires_at, actor, stage, payload"
)
_NEWEST_FIRST = "ORDER BY as_of DESC, created_at DESC"
# Errors meaning "the database is not there right now"; anything else is a bug and propagates.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresError,
)


def _driver_errors() -> AbstractContextManager[None]:
    """This adapter's one boundary: asyncpg's and the network's errors become ``StoreUnavailable``."""
    return translated(_UNAVAILABLE, StoreUnavailable, "store unavailable")


def _filters(stage: str | None, actor: str | None, first: int) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in (("stage", stage), ("actor", actor)):
        if value is not None:
            params.append(value)
            clauses.append(f"AND {column} = ${first + len(params) - 1}")
    return " ".join(clauses), params


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset query (unlock advisory locks, CLOSE
    ALL, UNLISTEN, RESET ALL): one more round trip per call, ~100 us of a write. The store leaves
    nothing to reset: its locks are transaction-scoped, it declares no cursors and sets nothing
    for the session, and it LISTENs on a connection of its own. asyncpg still rolls back a
    transaction left open by a cancelled call."""

    def get_reset_query(self) -> str:
        """Nothing to reset."""
        return ""


class PostgresStore:
    """``SnapshotStore`` on PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_connections: int = 1,
        max_connections: int = DATABASE_POOL_SIZE,
        command_timeout_s: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._min, self._max = min_connections, max_connections
        self._command_timeout_s = command_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_notify: Callable[[], None] | None = None
        self._relisten_task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        """Create the pool and apply migrations (unless ``migrate`` is False)."""
        settings = {"search_path": self._schema} if self._schema else {}
        with _driver_errors():
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min,
                max_size=self._max,
                command_timeout=self._command_timeout_s,
                server_settings={"synchronous_commit": "on", **settings},
                connection_class=StatelessConnection,
            )
        if migrate:
            await self.migrate()

    async def close(self) -> None:
        """Close listener and pool."""
        pool, self._pool = self._pool, None
        if self._relisten_task is not None:
            self._relisten_task.cancel()
        if self._listener is not None:
            with contextlib.suppress(*_UNAVAILABLE):
                await self._listener.close()
            self._listener = None
        if pool is not None:
            await pool.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations (serialized across processes); returns the versions applied."""

        async def work(conn: asyncpg.Connection) -> list[int]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            done = []
            for version, statements in MIGRATIONS:
                if version not in applied:
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                    done.append(version)
            return done

        return await self._transaction(work)

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._call(lambda conn: conn.fetchval("SELECT 1"))

    async def schema_versions(self) -> SchemaVersions:
        """The versions in ``schema_migrations`` (none before the first migration)."""

        async def applied(conn: asyncpg.Connection) -> list[int]:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return []
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]

        return SchemaVersions(tuple(await self._call(applied)), tuple(v for v, _ in MIGRATIONS))

    async def listen(self, on_notify: Callable[[], None]) -> None:
        """Call ``on_notify`` whenever a writer commits an outbox row (LISTEN/NOTIFY). If the
        listening connection dies (database restart), it is re-established in the background."""
        self._on_notify = on_notify
        await self._connect_listener()

    async def _connect_listener(self) -> None:
        with _driver_errors():
            listener = await asyncpg.connect(
                self._dsn, server_settings={"search_path": self._schema} if self._schema else {}
            )
            await listener.add_listener(NOTIFY_CHANNEL, self._notified)
        listener.add_termination_listener(self._listener_lost)
        self._listener = listener

    def _listener_lost(self, *_: object) -> None:
        self._listener = None
        if self._pool is not None:  # not closing
            self._relisten_task = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        while self._pool is not None and self._listener is None:
            try:
                await self._connect_listener()
            except StoreUnavailable:
                await asyncio.sleep(RELISTEN_INTERVAL_S)
                continue
            self._notified()  # rows may have been committed while nobody listened

    def _notified(self, *_: object) -> None:
        if self._on_notify is not None:
            self._on_notify()

    async def _call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        with _driver_errors():
            async with self._pool.acquire() as conn:
                return await work(conn)

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def in_transaction(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._call(in_transaction)

    # --- snapshots ------------------------------------------------------------------------------

    async def insert_snapshot(self, snapshot: StoredSnapshot, event: NewOutboxEvent) -> InsertResult:
        """Snapshot + outbox row in one transaction; idempotent on equal content."""
        result = await self._call(lambda conn: insert_snapshot(conn, snapshot, event))
        return same_content_or_conflict(result, snapshot)

    async def get_snapshot(self, world_id: str, version: str) -> StoredSnapshot | None:
        """The snapshot with this version."""
        sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM risk_snapshots WHERE world_id = $1 AND version = $2"
        return await self._one(sql, world_id, version)

    async def latest_snapshot(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None
    ) -> StoredSnapshot | None:
        """Greatest as_of, ties by created_at."""
        where, params = _filters(stage, actor, 2)
        sql = (
            f"SELECT {_SNAPSHOT_COLUMNS} FROM risk_snapshots WHERE world_id = $1 {where}{NOT_RETRACTED}"
            f" {_NEWEST_FIRST} LIMIT 1"
        )
        return await self._one(sql, world_id, *params)

    async def list_snapshots(
        self, world_id: str, *, limit: int, stage: str | None = None, actor: str | None = None
    ) -> list[StoredSnapshot]:
        """Newest first."""
        where, params = _filters(stage, actor, 2)
        sql = (
            f"SELECT {_SNAPSHOT_COLUMNS} FROM risk_snapshots WHERE world_id = $1 {where}"
            f" {_NEWEST_FIRST} LIMIT ${len(params) + 2}"
        )
        rows = await self._call(lambda conn: conn.fetch(sql, world_id, *params, limit))
        return [snapshot_of(row) for row in rows]

    async def snapshot_as_of(self, world_id: str, as_of: datetime) -> StoredSnapshot | None:
        """Newest snapshot with as_of at or before the given time."""
        sql = (
            f"SELECT {_SNAPSHOT_COLUMNS} FROM risk_snapshots WHERE world_id = $1 AND as_of <= $2"
            f"{NOT_RETRACTED} {_NEWEST_FIRST} LIMIT 1"
        )
        return await self._one(sql, world_id, as_of)

    async def world_ids(self) -> list[str]:
        """Every world with a snapshot."""
        rows = await self._call(
            lambda conn: conn.fetch("SELECT DISTINCT world_id FROM risk_snapshots ORDER BY world_id")
        )
        return [row[0] for row in rows]

    async def _one(self, sql: str, *params: Any) -> StoredSnapshot | None:
        row = await self._call(lambda conn: conn.fetchrow(sql, *params))
        return None if row is None else snapshot_of(row)

    # --- outbox ---------------------------------------------------------------------------------

    async def enqueue_event(self, event: NewOutboxEvent) -> None:
        """Insert one outbox row (under the world's writer lock, like a snapshot's)."""

        async def work(conn: asyncpg.Connection) -> None:
            await insert_events(conn, [event], datetime.now(UTC))

        await self._transaction(work)

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[OutboxPass]:
        """Claim worlds (try-lock) and their pending rows for one relay pass; commit at the end."""
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        with _driver_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                events = await claim(conn, limit)
                yield OutboxPass(conn, events)

    async def outbox_backlog(self) -> OutboxBacklog:
        """Pending count and oldest pending time."""
        row = await self._call(
            lambda conn: conn.fetchrow(
                "SELECT count(*), min(created_at) FROM risk_outbox WHERE status = 'pending'"
            )
        )
        return OutboxBacklog(row[0], row[1])

    # --- processed keys -------------------------------------------------------------------------

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Processed keys + worker rows in one transaction (one statement per run of distinct
        keys); False where the key was already processed."""

        async def work(conn: asyncpg.Connection) -> list[bool]:
            recorded: list[bool] = []
            for run in distinct_key_runs(outcomes):
                rows = await conn.fetch(
                    RECORD_OUTCOMES,
                    [o.dedupe_key for o in run],
                    [o.outcome for o in run],
                    [o.dedupe_key for o in run for _ in o.results],
                    [r.worker for o in run for r in o.results],
                    [r.encoded.decode() for o in run for r in o.results],
                    [o.error for o in run],
                )
                keys = {row[0] for row in rows}
                recorded += [o.dedupe_key in keys for o in run]
                events = [event for o in run if o.dedupe_key in keys for event in o.events]
                if events:  # only a newly recorded outcome announces anything
                    await insert_events(conn, events, datetime.now(UTC))
            return recorded

        return await self._transaction(work)

    async def processed_outcomes(self, keys: Sequence[str]) -> dict[str, str]:
        """The outcomes recorded for these keys."""
        rows = await self._call(
            lambda conn: conn.fetch(
                "SELECT dedupe_key, outcome FROM risk_processed WHERE dedupe_key = ANY($1::text[])",
                list(keys),
            )
        )
        return {str(row[0]): str(row[1]) for row in rows}

    async def worker_results(self, dedupe_key: str) -> list[WorkerResult]:
        """Worker rows of a key."""
        rows = await self._call(
            lambda conn: conn.fetch(
                "SELECT worker, result FROM risk_worker_results WHERE dedupe_key = $1 ORDER BY worker",
                dedupe_key,
            )
        )
        return [WorkerResult(worker=row[0], result=loads_exact(row[1])) for row in rows]

    async def retract(
        self, world_id: str, version: str, reason: str, at: datetime, event: NewOutboxEvent
    ) -> bool:
        """The retraction row and its event in one transaction; False if already retracted."""

        async def work(conn: asyncpg.Connection) -> bool:
            inserted = await conn.fetchval(
                "INSERT INTO risk_retractions (world_id, version, reason, retracted_at) VALUES ($1,$2,$3,$4)"
                " ON CONFLICT (world_id, version) DO NOTHING RETURNING true",
                world_id,
                version,
                reason,
                at,
            )
            if inserted:
                await insert_events(conn, [event], at)
            return bool(inserted)

        return await self._transaction(work)

    async def retractions(self, world_id: str, versions: Sequence[str]) -> dict[str, tuple[str, datetime]]:
        """Reason and time of each retracted version among ``versions``."""
        return await self._call(partial(pg_reads.retractions, world_id=world_id, versions=list(versions)))

    async def status_points(self, points: int) -> list[StatusPoint]:
        """Per world and stage, its newest snapshots with outcome and sigma (one query)."""
        return await self._call(partial(pg_reads.status_points, points=points))

    async def recent_failures(self, limit: int) -> list[RiskRecord]:
        """The newest dead-lettered keys, with their error."""
        return await self._call(partial(pg_reads.recent_failures, limit=limit))

    async def risk_records(self, keys: Sequence[str], worker: str) -> dict[str, RiskRecord]:
        """The recorded outcome of each key that has one, with ``worker``'s row."""
        return await self._call(partial(pg_reads.risk_records, keys=list(keys), worker=worker))
