"""Durable persistence: snapshots, the transactional outbox, and processed dedupe keys.

One ``SnapshotStore`` protocol; SQLite (embedded) and PostgreSQL implement it and pass the same
test suite. A snapshot row and the outbox row announcing it are written in ONE transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from riskhub.canonical import dumps_compact, loads_exact, merge_objects
from riskhub.errors import VersionConflict

OUTCOME_PROCESSED = "processed"
OUTCOME_DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A snapshot as stored. ``payload`` is its JSON (hash, created_at, refs; no ``expired``)."""

    world_id: str
    version: str
    hash: str
    content_sha256: str  # sha256 digest of the normalized body: equal digests, same snapshot
    as_of: datetime
    created_at: datetime
    expires_at: datetime
    actor: str
    stage: str | None
    payload: bytes

    def is_expired(self, now: datetime) -> bool:
        """True once ``created_at + ttl_sec`` has passed."""
        return now >= self.expires_at

    def newer_than(self, other: StoredSnapshot) -> bool:
        """Greatest ``as_of`` wins; ties go to the later ``created_at``."""
        return (self.as_of, self.created_at) > (other.as_of, other.created_at)

    def response_body(self, now: datetime) -> bytes:
        """The payload with the server field ``expired`` added, as served to readers."""
        flag = b',"expired":true}' if self.is_expired(now) else b',"expired":false}'
        return self.payload[:-1] + flag

    def document(self) -> dict[str, object]:
        """The payload parsed."""
        doc: dict[str, object] = loads_exact(self.payload)
        return doc


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event waiting in the outbox; ``data`` is the CloudEvent data as JSON."""

    id: int
    world_id: str
    event_id: str
    event_type: str
    correlation_id: str | None
    created_at: datetime
    data: bytes
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class NewOutboxEvent:
    """An event to enqueue for a stored snapshot. The outbox row references the snapshot rather
    than copying its payload; ``extra`` holds the event's own fields as a JSON object."""

    world_id: str
    version: str
    event_id: str
    event_type: str
    correlation_id: str | None
    extra: bytes


def event_data(payload: bytes, extra: bytes) -> bytes:
    """The CloudEvent data: the stored snapshot's JSON object with the event fields added."""
    return merge_objects(payload, extra)


@dataclass(frozen=True, slots=True)
class InsertResult:
    """``created`` is False for an idempotent retry; ``snapshot`` is what the store holds.
    ``newest_in`` lists the scopes (None = the world, else a stage) in which the new snapshot is
    now the newest, as seen inside the inserting transaction: only those may be cached."""

    created: bool
    snapshot: StoredSnapshot
    newest_in: tuple[str | None, ...] = ()


def same_content_or_conflict(result: InsertResult, offered: StoredSnapshot) -> InsertResult:
    """An existing (world_id, version) is an idempotent retry only with the same content;
    otherwise ``VersionConflict`` (a version is immutable, never overwritten)."""
    if not result.created and result.snapshot.content_sha256 != offered.content_sha256:
        raise VersionConflict(
            f"version: {offered.world_id}/{offered.version} exists with hash {result.snapshot.hash};"
            " a version is immutable, publish a new version",
            field="version",
        )
    return result


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Unsent outbox rows and the creation time of the oldest."""

    pending: int
    oldest_created_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """One worker's effect for one event: a row keyed by (dedupe key, worker).

    The row is encoded when it is made: a result no store can hold fails its worker's attempt
    (retried, then dead-lettered) instead of the transaction of the whole batch."""

    worker: str
    result: dict[str, object]
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", dumps_compact(self.result))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one event left: its dedupe key, ``processed`` or ``dlq``, the workers' rows."""

    dedupe_key: str
    outcome: str
    results: Sequence[WorkerResult] = ()


class OutboxBatch(Protocol):
    """Events claimed by one relay pass."""

    events: list[OutboxEvent]

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Mark events as acknowledged by the bus."""

    async def mark_failed(self, event_id: int, error: str) -> None:
        """Record a failed publish attempt; the event stays pending."""


class SnapshotStore(Protocol):
    """Snapshots, outbox and processed keys behind one small interface."""

    async def open(self) -> None:
        """Connect and apply schema migrations."""

    async def close(self) -> None:
        """Release connections."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    async def listen(self, on_commit: Callable[[], None]) -> None:
        """Call ``on_commit`` when any process commits an outbox row (where the store can)."""

    async def insert_snapshot(self, snapshot: StoredSnapshot, event: NewOutboxEvent) -> InsertResult:
        """Store snapshot + outbox event in one transaction; same content again is a no-op;
        other content for an existing (world_id, version) raises ``VersionConflict``."""

    async def get_snapshot(self, world_id: str, version: str) -> StoredSnapshot | None:
        """The snapshot with this version."""

    async def latest_snapshot(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None
    ) -> StoredSnapshot | None:
        """Greatest as_of (ties: latest created_at), expired or not."""

    async def list_snapshots(
        self, world_id: str, *, limit: int, stage: str | None = None, actor: str | None = None
    ) -> list[StoredSnapshot]:
        """Newest first."""

    async def snapshot_as_of(self, world_id: str, as_of: datetime) -> StoredSnapshot | None:
        """The newest snapshot whose as_of is at or before ``as_of``."""

    async def world_ids(self) -> list[str]:
        """Every world with at least one snapshot."""

    async def enqueue_event(self, event: NewOutboxEvent) -> None:
        """Add an event to the outbox on its own (re-emitting a stored snapshot)."""

    def claim_outbox(self, limit: int) -> AbstractAsyncContextManager[OutboxBatch]:
        """Claim unsent events in outbox order for the duration of the block. For each world the
        claimed events are a prefix of its unsent ones, and no other claimer holds that world."""

    async def outbox_backlog(self) -> OutboxBacklog:
        """Count and age of unsent events."""

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Store the keys and the workers' rows of several events in ONE transaction. Per
        outcome: False (nothing of it written) if its key was already processed. A key recorded
        as ``dlq`` may be recorded again (a replay runs the workers again)."""

    async def processed_outcomes(self, keys: Sequence[str]) -> dict[str, str]:
        """The recorded outcome of each of ``keys`` that has one."""

    async def worker_results(self, dedupe_key: str) -> list[WorkerResult]:
        """The rows the workers produced for a key."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_us(value: int) -> datetime:
    """Epoch microseconds to an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=value)


def us_from_utc(value: datetime) -> int:
    """Aware datetime to epoch microseconds (exact)."""
    return (value - _EPOCH) // timedelta(microseconds=1)
