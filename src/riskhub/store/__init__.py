"""Durable persistence: snapshots, the transactional outbox, and processed dedupe keys.

One ``SnapshotStore`` protocol; SQLite (embedded) and PostgreSQL implement it and pass the same
test suite. A snapshot row and the outbox row announcing it are written in ONE transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from riskhub import model


@dataclass(frozen=True, slots=True)
class SchemaVersions:
    """The migrations a database has and the ones this code knows (``riskhub doctor``)."""

    applied: tuple[int, ...]
    known: tuple[int, ...]

    @property
    def pending(self) -> tuple[int, ...]:
        """Known migrations not applied yet (``riskhub migrate`` applies them)."""
        return tuple(v for v in self.known if v not in self.applied)

    @property
    def unknown(self) -> tuple[int, ...]:
        """Applied migrations this code does not know (a newer riskhub migrated the database)."""
        return tuple(v for v in self.applied if v not in self.known)


class OutboxBatch(Protocol):
    """Events claimed by one relay pass."""

    events: list[model.OutboxEvent]

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Mark events as acknowledged by the bus."""

    async def mark_failed(self, event_id: int, error: str) -> None:
        """Record a failed publish attempt; the event stays pending."""


class SnapshotStore(Protocol):
    """Snapshots, outbox and processed keys behind one small interface."""

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and apply schema migrations (``migrate=False``: only connect, to an existing
        database; the doctor looks without changing anything)."""

    async def schema_versions(self) -> SchemaVersions:
        """Applied and known schema migrations."""

    async def close(self) -> None:
        """Release connections."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    async def listen(self, on_commit: Callable[[], None]) -> None:
        """Call ``on_commit`` when any process commits an outbox row (where the store can)."""

    async def insert_snapshot(
        self, snapshot: model.StoredSnapshot, event: model.NewOutboxEvent
    ) -> model.InsertResult:
        """Store snapshot + outbox event in one transaction; same content again is a no-op;
        other content for an existing (world_id, version) raises ``VersionConflict``."""

    async def get_snapshot(self, world_id: str, version: str) -> model.StoredSnapshot | None:
        """The snapshot with this version."""

    async def latest_snapshot(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None
    ) -> model.StoredSnapshot | None:
        """Greatest as_of (ties: latest created_at), expired or not."""

    async def list_snapshots(
        self, world_id: str, *, limit: int, stage: str | None = None, actor: str | None = None
    ) -> list[model.StoredSnapshot]:
        """Newest first."""

    async def snapshot_as_of(self, world_id: str, as_of: datetime) -> model.StoredSnapshot | None:
        """The newest snapshot whose as_of is at or before ``as_of``."""

    async def world_ids(self) -> list[str]:
        """Every world with at least one snapshot."""

    async def enqueue_event(self, event: model.NewOutboxEvent) -> None:
        """Add an event to the outbox on its own (re-emitting a stored snapshot)."""

    def claim_outbox(self, limit: int) -> AbstractAsyncContextManager[OutboxBatch]:
        """Claim unsent events in outbox order for the duration of the block. For each world the
        claimed events are a prefix of its unsent ones, and no other claimer holds that world."""

    async def outbox_backlog(self) -> model.OutboxBacklog:
        """Count and age of unsent events."""

    async def record_outcomes(self, outcomes: Sequence[model.Outcome]) -> list[bool]:
        """Store the keys, the workers' rows and the outbox rows of the events those announce,
        for several events in ONE transaction. Per
        outcome: False (nothing of it written) if its key was already processed. A key recorded
        as ``dlq`` may be recorded again (a replay runs the workers again)."""

    async def processed_outcomes(self, keys: Sequence[str]) -> dict[str, str]:
        """The recorded outcome of each of ``keys`` that has one."""

    async def worker_results(self, dedupe_key: str) -> list[model.WorkerResult]:
        """The rows the workers produced for a key."""

    async def retract(
        self, world_id: str, version: str, reason: str, at: datetime, event: model.NewOutboxEvent
    ) -> bool:
        """Mark a stored version retracted and enqueue its event, in one transaction; False (and
        nothing written) if it already was. It stays stored and listed, never served as latest."""

    async def retractions(self, world_id: str, versions: Sequence[str]) -> dict[str, tuple[str, datetime]]:
        """Of these versions of a world, the retracted ones: reason and when."""

    async def status_points(self, points: int) -> list[model.StatusPoint]:
        """Per world and stage, its ``points`` newest snapshots, newest first, with their outcome
        and sigma (the newest with its whole risk row): one query for the status page."""

    async def recent_failures(self, limit: int) -> list[model.RiskRecord]:
        """The newest dead-lettered keys, with their error."""

    async def risk_records(self, keys: Sequence[str], worker: str) -> dict[str, model.RiskRecord]:
        """The recorded outcome of each of ``keys`` that has one, with ``worker``'s row (if any)."""
