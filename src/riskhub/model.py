"""The hub's own records: a stored snapshot, outbox events, a consumer outcome, a worker's result.

Plain data with no I/O; the store, the cache, the hub and the consumer all speak in these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from riskhub.contract import dedupe_key
from riskhub.contract.canonical import dumps_compact, loads_exact
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

    @property
    def dedupe_key(self) -> str:
        """The consumer's idempotency key of this snapshot's event."""
        return dedupe_key(self.world_id, self.version, self.hash, self.actor, self.stage)

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
    """An event to enqueue about a stored snapshot. A snapshot's own event references the row
    rather than copying its payload (``extra`` holds the event's fields as a JSON object); an
    event about it (a limit breach) carries its whole ``data`` instead."""

    world_id: str
    version: str
    event_id: str
    event_type: str
    correlation_id: str | None
    extra: bytes
    data: bytes | None = None


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
    events: tuple[NewOutboxEvent, ...] = ()  # announced with the row, in the same transaction
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", dumps_compact(self.result))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one event left: its dedupe key, ``processed`` or ``dlq`` (with the error
    that sent it there), the workers' rows and the events they announce."""

    dedupe_key: str
    outcome: str
    results: Sequence[WorkerResult] = ()
    error: str | None = None

    @property
    def events(self) -> list[NewOutboxEvent]:
        """The events of every worker row, in worker order."""
        return [event for row in self.results for event in row.events]


@dataclass(frozen=True, slots=True)
class RiskRecord:
    """A snapshot event's recorded outcome with the row of one worker (the risk figures)."""

    dedupe_key: str
    outcome: str
    processed_at: datetime
    error: str | None
    result: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class StatusPoint:
    """One of a world/stage's newest snapshots as the status page shows it: ``rank`` 1 is the
    newest, with a summary of the risk worker's row (``figures``, ``worst_stress``, ``blocking``,
    ``breaches`` as a count); later ranks carry only their sigma."""

    world_id: str
    stage: str | None
    rank: int
    version: str
    as_of: datetime
    created_at: datetime
    expires_at: datetime
    outcome: str | None
    sigma: float | None
    result: dict[str, object] | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_us(value: int) -> datetime:
    """Epoch microseconds to an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=value)


def us_from_utc(value: datetime) -> int:
    """Aware datetime to epoch microseconds (exact)."""
    return (value - _EPOCH) // timedelta(microseconds=1)
