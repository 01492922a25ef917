"""The hub's write and read paths. Knows the adapters only through their protocols.

Write: validate -> offload large parts -> ONE transaction (snapshot + outbox event) -> cache -> answer.
Publishing is the outbox relay's job, never a side effect of the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from riskhub.blobs import BlobStore, offload_large_parts, read_part, require_address
from riskhub.cache import LatestCache
from riskhub.config import MAX_TEXT_CHARS
from riskhub.contract import (
    OFFLOADABLE_PARTS,
    ContractRules,
    Snapshot,
    check_referenced_part,
    check_stored_text,
    normalize_snapshot,
    normalize_stage,
    parse_json,
    parse_timestamp,
)
from riskhub.contract.canonical import dumps_compact, merge_objects
from riskhub.errors import (
    BlobCorrupted,
    BlobMissing,
    CacheUnavailable,
    ContractError,
    PayloadTooLarge,
    RequestRejected,
    SnapshotExpired,
    SnapshotNotFound,
    Unavailable,
    VersionConflict,
)
from riskhub.events import retraction_event, snapshot_event
from riskhub.logs import clip
from riskhub.memory import release_freed_memory
from riskhub.metrics import Metrics, stage_label
from riskhub.model import InsertResult, StoredSnapshot
from riskhub.store import SnapshotStore

log = logging.getLogger(__name__)
MAX_LIST_LIMIT = 1000
OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are validated in a thread
VALID_REFS_KEPT = 256  # producer refs remembered as checked (a few id sets per producer)
T = TypeVar("T")


def utc_now() -> datetime:
    """The hub's clock."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """RFC 3339 with ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class HubLimits:
    """Hub settings the write path needs."""

    rules: ContractRules
    inline_threshold_bytes: int
    max_event_bytes: int  # a stored snapshot is its event's data, which the bus must take


class Hub:
    """Validates, stores and serves snapshots."""

    def __init__(
        self,
        *,
        store: SnapshotStore,
        cache: LatestCache,
        blobs: BlobStore,
        metrics: Metrics,
        limits: HubLimits,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.blobs = blobs
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self.on_commit = on_commit  # wakes the outbox relay; a hint, not a delivery
        # Producer refs whose blob held a valid part for these ids: a blob's name is its content's
        # sha256, so the check holds for good. Producers send the same ref with every snapshot
        # (a 200-id covariance is ~1 MB: reading and checking it was 15 ms a write).
        self._valid_refs: OrderedDict[tuple[str, frozenset[str]], None] = OrderedDict()

    # --- write ---------------------------------------------------------------------------------

    async def write_snapshot(
        self,
        world_id: str,
        raw: bytes,
        *,
        actor: str | None,
        stage: str | None,
        correlation_id: str | None = None,
        token: str | None = None,
    ) -> InsertResult:
        """Store one snapshot and its event; an equal retry is a no-op (``created`` False).
        ``token`` is the fingerprint of the token that wrote it, for the log line."""
        try:
            validate = partial(self._validate, raw, world_id, actor, stage)
            # Megabytes of JSON take a second or more of Python: off the event loop (the thread
            # yields the GIL every few ms), so every other request, /healthz too, still answers.
            snap = await asyncio.to_thread(validate) if len(raw) > OFF_LOOP_BYTES else validate()
            await self._pin_producer_refs(snap.body)  # blob GETs and pins
            record = self._stored_snapshot(
                snap, *await self._offload(snap, self.limits.inline_threshold_bytes)
            )
            if len(record.payload) > self.limits.max_event_bytes:  # the payload is the event's data
                record = self._stored_snapshot(snap, *await self._offload(snap, 0))  # every part out
                self._check_event_size(record)
            event = snapshot_event(snap.world_id, snap.version, snap.dedupe_key, correlation_id)
            # The parsed body is thousands of objects: let them go before waiting for the commit,
            # so the next requests parse into memory still in the CPU cache.
            del snap
            result = await self.store.insert_snapshot(record, event)
        except RequestRejected as exc:  # 409 included: every rejected write is counted by reason
            self.reject_write(exc, world_id, actor=actor, stage=stage, correlation_id=correlation_id)
            raise
        finally:
            if len(raw) > OFF_LOOP_BYTES:  # its millions of objects are gone: give the pages back
                await asyncio.to_thread(release_freed_memory)
        if result.created:
            self.on_commit()
            await self._offer_to_cache(result.snapshot, result.newest_in)
        self._count_write(record, result)
        log.info(
            "snapshot %s",
            "stored" if result.created else "deduplicated",
            extra={
                "world_id": record.world_id,
                "stage": record.stage,
                "version": clip(record.version),
                "actor": clip(record.actor),
                "hash": record.hash,
                "correlation_id": clip(correlation_id) if correlation_id else None,
                "token": token,
            },
        )
        return result

    def _validate(self, raw: bytes, world_id: str, actor: str | None, stage: str | None) -> Snapshot:
        """Parse and normalize a body under the contract's rules, as of the hub's clock."""
        rules, now = self.limits.rules, self.clock()
        return normalize_snapshot(
            parse_json(raw), world_id=world_id, actor=actor, stage=stage, rules=rules, now=now
        )

    async def _pin_producer_refs(self, body: dict[str, Any]) -> None:
        """A producer's ref must point into our blob store, to a blob that holds a valid part
        (else every expand and every worker would fail on it); it then never expires."""
        for part in OFFLOADABLE_PARTS:
            ref = body.get(f"{part}_ref")
            if ref is None:
                continue
            ref_field = f"{part}_ref"
            require_address(self.blobs, ref, ref_field)
            await self._check_ref(part, ref, body["weights"])
            if not await self._blob_call("pin", self.blobs.pin(ref)):
                raise ContractError(f"{ref_field}: blob {ref} does not exist", field=ref_field)

    async def _check_ref(self, part: str, ref: str, weights: dict[str, Any]) -> None:
        """The blob behind a producer's ref holds a valid ``part`` for these weights' ids (read
        and checked once per ref and id set; the pin that follows still proves it exists)."""
        key = (ref, frozenset(weights))
        if key in self._valid_refs:
            self._valid_refs.move_to_end(key)
            return
        ref_field = f"{part}_ref"
        try:
            content = await self.blobs.get(ref)
        except (BlobMissing, BlobCorrupted) as exc:  # the producer's doing, not the store's
            raise ContractError(f"{ref_field}: {exc}", field=ref_field) from None
        except Unavailable:
            self.metrics.blob_errors.labels("get", "unavailable").inc()
            raise
        check_referenced_part(part, content, weights)
        self._valid_refs[key] = None
        if len(self._valid_refs) > VALID_REFS_KEPT:
            self._valid_refs.popitem(last=False)

    def _check_event_size(self, record: StoredSnapshot) -> None:
        """A stored payload is also its event's data, which the bus must take; with every part
        offloaded, weights, constraints and extra keys still inline, it may still be too large (413)."""
        limit = self.limits.max_event_bytes
        if len(record.payload) > limit:
            raise PayloadTooLarge(
                f"body: {len(record.payload)} bytes stay inline once covariance, realized_returns and"
                f" stress are offloaded, over the {limit}-byte limit of an event (RISKHUB_MAX_EVENT_BYTES)",
                field="body",
            )

    async def _offload(self, snap: Snapshot, threshold: int) -> tuple[dict[str, Any], list[str]]:
        """Blob PUTs: inline parts over ``threshold`` bytes become content-addressed refs."""
        # A part's canonical JSON is a piece of the snapshot's: a small snapshot has no large part.
        if len(snap.canonical) <= threshold:
            return snap.body, []
        body, refs = await self._blob_call(
            "put", offload_large_parts(snap.body, self.blobs, threshold, pin=True)
        )
        return body, list(refs)

    def _stored_snapshot(self, snap: Snapshot, body: dict[str, Any], offloaded: list[str]) -> StoredSnapshot:
        created_at = self.clock()
        server_fields = {"hash": snap.hash, "created_at": iso_utc(created_at)}
        if offloaded:
            payload = dumps_compact({**body, **server_fields, "hub_offloaded": offloaded})
        else:  # the body is already serialized (canonical JSON, for the hash): no second dump
            payload = merge_objects(snap.canonical, dumps_compact(server_fields))
        return StoredSnapshot(
            world_id=snap.world_id,
            version=snap.version,
            hash=snap.hash,
            content_sha256=snap.digests["sha256"],
            as_of=snap.as_of,
            created_at=created_at,
            expires_at=created_at + timedelta(seconds=snap.ttl_s),
            actor=snap.actor,
            stage=snap.stage,
            payload=payload,
        )

    def _count_write(self, stored: StoredSnapshot, result: InsertResult) -> None:
        stage = stage_label(stored.stage, self.limits.rules.allowed_stages)
        self.metrics.start_series(stored.world_id, stage)
        if result.created:
            self.metrics.accepted.labels(stored.world_id, stage).inc()
        else:
            self.metrics.dedupe.labels(stored.world_id, stage).inc()
        if stored.stage is None:
            self.count_violation("missing_stage", None)

    def reject_write(
        self,
        exc: RequestRejected,
        world_id: str,
        *,
        actor: str | None,
        stage: str | None,
        correlation_id: str | None = None,
    ) -> None:
        """Count a rejected write by reason and log what was wrong with it, every value from the
        request cut to a loggable length (never the token: no message carries it)."""
        self.count_violation(exc.reason, stage)
        fields = {"world_id": world_id, "stage": stage, "actor": actor, "correlation_id": correlation_id}
        log.warning(
            "snapshot rejected: %s (%s; actor %r, stage %r)",
            clip(exc.message),
            exc.reason,
            clip(actor) if actor is not None else None,
            clip(stage) if stage is not None else None,
            extra={key: clip(value) for key, value in fields.items() if value is not None},
        )

    def count_violation(self, reason: str, stage: str | None) -> None:
        """Count a rejected or non-conforming write (producer-violation metric)."""
        label = stage_label(normalize_stage(stage), self.limits.rules.allowed_stages)
        self.metrics.producer_violations.labels(reason, label).inc()

    # --- read ----------------------------------------------------------------------------------

    async def latest_snapshot(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None
    ) -> StoredSnapshot:
        """The newest snapshot; 404 if none, and 404 naming it if it has expired (no fallback)."""
        _check_read_ids(world_id=world_id, actor=actor)
        cached = None if actor is not None else await self._cached_latest(world_id, stage)
        snapshot = cached or await self.store.latest_snapshot(world_id, stage=stage, actor=actor)
        if snapshot is None:
            raise SnapshotNotFound(f"no snapshot for world {world_id!r}{_filter_text(stage, actor)}")
        if cached is None and actor is None:
            await self._offer_to_cache(snapshot, (stage,))
        if snapshot.is_expired(self.clock()):
            raise SnapshotExpired(
                f"latest snapshot {snapshot.version!r} of world {world_id!r} expired at "
                f"{iso_utc(snapshot.expires_at)}",
                field="version",
            )
        return snapshot

    async def list_snapshots(
        self, world_id: str, *, limit: int, stage: str | None = None, actor: str | None = None
    ) -> list[StoredSnapshot]:
        """History, newest first, expired ones included."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ContractError(f"limit: must be between 1 and {MAX_LIST_LIMIT}", field="limit")
        _check_read_ids(world_id=world_id, actor=actor)
        return await self.store.list_snapshots(world_id, limit=limit, stage=stage, actor=actor)

    async def lookup_snapshot(
        self, world_id: str, *, version: str | None, as_of: str | None
    ) -> StoredSnapshot:
        """By exact version, or the newest at or before ``as_of``."""
        if (version is None) == (as_of is None):
            raise ContractError("lookup: give exactly one of version or as_of", field="version")
        _check_read_ids(world_id=world_id, version=version)
        if version is not None:
            found = await self.store.get_snapshot(world_id, version)
        else:
            assert as_of is not None
            found = await self.store.snapshot_as_of(world_id, parse_timestamp(as_of, "as_of"))
        if found is None:
            wanted = f"version {version!r}" if version is not None else f"as_of <= {as_of}"
            raise SnapshotNotFound(f"no snapshot of world {world_id!r} with {wanted}")
        return found

    async def retract(self, world_id: str, version: str, reason: str) -> StoredSnapshot:
        """Take a version out of "latest" for good (it stays stored and listed, marked) and
        announce it as a ``risk_snapshot_retracted`` event; 409 if it already was."""
        _check_read_ids(world_id=world_id, version=version)
        if not reason.strip() or len(reason) > MAX_TEXT_CHARS:
            raise ContractError(f"reason: 1 to {MAX_TEXT_CHARS} characters, say why", field="reason")
        snapshot = await self.lookup_snapshot(world_id, version=version, as_of=None)
        at = self.clock()
        event = retraction_event(snapshot, reason, iso_utc(at))
        if not await self.store.retract(world_id, version, reason, at, event):
            raise VersionConflict(
                f"version: {version!r} of world {world_id!r} is already retracted", field="version"
            )
        self.on_commit()
        try:  # the entries may hold it; the next read fills them from the store, which skips it
            await self.cache.forget(world_id, (None, *self.limits.rules.allowed_stages))
        except CacheUnavailable:  # a Redis entry lives CACHE_MAX_AGE_SEC at most
            self.metrics.cache_requests.labels("error").inc()
        log.warning(
            "snapshot retracted",
            extra={"world_id": world_id, "version": clip(version), "reason": clip(reason)},
        )
        return snapshot

    async def retraction_marks(self, world_id: str, snapshots: list[StoredSnapshot]) -> dict[str, bytes]:
        """Per retracted version among ``snapshots``, the server field ``retracted`` as JSON."""
        if not snapshots:
            return {}
        found = await self.store.retractions(world_id, [s.version for s in snapshots])
        return {
            version: dumps_compact({"reason": reason, "at": iso_utc(at)})
            for version, (reason, at) in found.items()
        }

    async def expand(self, snapshot: StoredSnapshot) -> dict[str, Any]:
        """The snapshot with every ``*_ref`` resolved inline (digest-verified); hub-offloaded parts
        come back exactly as the producer sent them."""
        document: dict[str, Any] = snapshot.document()
        offloaded = document.pop("hub_offloaded", None) or []
        for part in OFFLOADABLE_PARTS:
            ref = document.get(f"{part}_ref")
            if ref is None:
                continue
            document[part] = await self._blob_call("get", read_part(self.blobs, ref))
            if part in offloaded:
                del document[f"{part}_ref"]
        document["expired"] = snapshot.is_expired(self.clock())
        return document

    # --- helpers around the adapters ------------------------------------------------------------

    async def _cached_latest(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        try:
            cached = await self.cache.get(world_id, stage)
        except CacheUnavailable:
            self.metrics.cache_requests.labels("error").inc()
            return None
        self.metrics.cache_requests.labels("miss" if cached is None else "hit").inc()
        return cached

    async def _offer_to_cache(self, snapshot: StoredSnapshot, scopes: tuple[str | None, ...]) -> None:
        if not scopes:
            return
        self.metrics.freshness.observe(
            snapshot.world_id,
            stage_label(snapshot.stage, self.limits.rules.allowed_stages),
            snapshot.as_of,
            snapshot.created_at,
        )
        try:
            await self.cache.offer(snapshot, scopes)
        except CacheUnavailable:
            self.metrics.cache_requests.labels("error").inc()

    async def _blob_call(self, operation: str, call: Awaitable[T]) -> T:
        """Await a blob store call, counting its failures by kind."""
        try:
            return await call
        except BlobCorrupted:
            self.metrics.blob_errors.labels(operation, "corrupted").inc()
            raise
        except BlobMissing:
            self.metrics.blob_errors.labels(operation, "missing").inc()
            raise
        except Unavailable:
            self.metrics.blob_errors.labels(operation, "unavailable").inc()
            raise


def _check_read_ids(**ids: str | None) -> None:
    """A read naming what no snapshot can have (NUL, unpaired surrogates) is a 422, not a store error."""
    for name, value in ids.items():
        if value is not None:
            check_stored_text(value, name)


def _filter_text(stage: str | None, actor: str | None) -> str:
    parts = [f"stage={stage!r}" if stage else "", f"actor={actor!r}" if actor else ""]
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""
