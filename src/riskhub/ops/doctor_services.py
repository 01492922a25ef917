"""The doctor's lines for the hub's own services: database, schema, outbox relay, cache, blob store.

Nothing is changed: the database is opened without migrating; the blob store gets one probe
object of unique content (so it can never be a snapshot's blob), which is deleted again (a file
store's directory is created if missing, as the hub would on its first offload).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson

from riskhub.blobs import BlobStore
from riskhub.bootstrap import build_blobs, build_cache, build_store, sqlite_path
from riskhub.config import BLOB_REDIS_PREFIX, OUTBOX_AGE_WARN_S, Settings
from riskhub.errors import BlobCorrupted, BlobMissing, Unavailable
from riskhub.ops.checklist import Finding, State, Verdict, guarded, not_checked, redacted, worst
from riskhub.store import SnapshotStore

MIGRATE = "run `riskhub migrate` (stop the old version first: runbook, Upgrades)"


def is_postgres(settings: Settings) -> bool:
    """Whether the store is PostgreSQL (production) rather than the embedded SQLite file."""
    return sqlite_path(settings) is None


async def store_findings(settings: Settings, timeout_s: float) -> list[Finding]:
    """``database`` (reachable; PostgreSQL in production), ``schema`` (migrated), ``outbox``."""
    store = build_store(settings)
    try:
        database = await guarded("database", _open_database(store, settings), timeout_s)
        if database.state is State.FAIL:
            return [
                database,
                not_checked("schema", "database unreachable"),
                not_checked("outbox", "database unreachable"),
            ]
        schema = await guarded("schema", _schema(store), timeout_s)
        if schema.state is State.FAIL:
            return [database, schema, not_checked("outbox", "the schema is not migrated")]
        return [database, schema, await guarded("outbox", _outbox(store), timeout_s)]
    finally:
        await store.close()


async def _open_database(store: SnapshotStore, settings: Settings) -> Verdict:
    path = sqlite_path(settings)
    if path is not None and not await asyncio.to_thread(path.is_file):
        return State.FAIL, f"no SQLite file at {path}: has `riskhub serve` run with this RISKHUB_DATA_DIR?"
    await store.open(migrate=False)
    await store.ping()
    if path is not None:
        return State.WARN, (
            f"embedded SQLite {path} answers; it serves one hub process only:"
            " production needs RISKHUB_DATABASE_URL=postgresql://..."
        )
    schema = settings.database_schema or "public"
    return State.OK, f"{redacted(settings.database_url or '')} answers (schema {schema})"


async def _schema(store: SnapshotStore) -> Verdict:
    versions = await store.schema_versions()
    current, latest = max(versions.applied, default=0), max(versions.known)
    if versions.pending:
        pending = ", ".join(map(str, versions.pending))
        return State.FAIL, f"at migration {current} of {latest} (pending: {pending}): {MIGRATE}"
    if versions.unknown:
        return State.WARN, f"at migration {current}, newer than this riskhub knows ({latest}): upgrade it"
    return State.OK, f"at migration {latest}, the latest"


async def _outbox(store: SnapshotStore) -> Verdict:
    backlog = await store.outbox_backlog()
    if backlog.pending == 0 or backlog.oldest_created_at is None:
        return State.OK, "no event waits for the relay"
    age_s = (datetime.now(UTC) - backlog.oldest_created_at).total_seconds()
    facts = f"{backlog.pending} events wait for the relay, the oldest for {age_s:.0f} s"
    if age_s <= OUTBOX_AGE_WARN_S:
        return State.OK, facts
    why = "is a relay running (`serve` with RISKHUB_RUN_RELAY=true, or `riskhub relay`) and the bus up?"
    return State.WARN, f"{facts}: {why}"


async def check_cache(settings: Settings) -> Verdict:
    """Redis answers; it is required next to PostgreSQL (the runbook)."""
    if settings.redis_url is None:
        if is_postgres(settings):
            return State.FAIL, (
                "RISKHUB_REDIS_URL is not set: required with PostgreSQL (the runbook); every read"
                " goes to the database and `backfill` has no cache to fill"
            )
        if settings.serve_workers > 1:
            processes = f"{settings.serve_workers} `serve` processes share the SQLite file"
            return State.OK, f"no latest cache ({processes}): every read goes to the file"
        return State.OK, "in-process latest cache (embedded, one hub process)"
    cache = build_cache(settings)
    try:
        await cache.ping()
    except Unavailable as exc:
        return State.FAIL, f"{redacted(settings.redis_url)} does not answer: {exc.message}"
    finally:
        await cache.close()
    return State.OK, f"{redacted(settings.redis_url)} answers (key prefix {settings.cache_prefix!r})"


async def check_blob_store(settings: Settings) -> Verdict:
    """A probe object is written, read back and deleted under the store's prefix."""
    where = redacted(settings.blob_url) if settings.blob_url else f"files under {settings.data_dir / 'blobs'}"
    blobs = build_blobs(settings)
    try:
        state, detail = await _probe(blobs, where)
    finally:
        await blobs.close()
    if state is State.FAIL:
        return state, detail
    problems = _blob_layout_problems(settings)
    return worst([state, *(s for s, _ in problems)]), "; ".join([detail, *(text for _, text in problems)])


async def _probe(blobs: BlobStore, where: str) -> Verdict:
    content = orjson.dumps({"riskhub_doctor_probe": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat()})
    try:
        ref = await blobs.put(content)
    except Unavailable as exc:
        return State.FAIL, f"{where}: cannot write a probe object: {exc.message}"
    try:
        if await blobs.get(ref) != content:
            return State.FAIL, f"{where}: the probe object {ref} reads back different"
    except (Unavailable, BlobMissing, BlobCorrupted) as exc:
        return State.FAIL, f"{where}: wrote {ref} but cannot read it back: {exc.message}"
    try:
        await blobs.delete(ref)
    except Unavailable as exc:
        return State.WARN, (
            f"{where}: probe object written and read back but not deleted ({exc.message}); remove"
            f" {ref} by hand, or let the doctor's role delete under the prefix"
        )
    return State.OK, f"{where}: a probe object was written, read back and deleted"


def _blob_layout_problems(settings: Settings) -> list[Verdict]:
    url = settings.blob_url or ""
    if url.startswith(("redis://", "rediss://")) and settings.blob_redis_prefix != BLOB_REDIS_PREFIX:
        prefix = settings.blob_redis_prefix
        return [(State.WARN, f"Redis prefix {prefix!r}, not the runbook's {BLOB_REDIS_PREFIX!r}")]
    if is_postgres(settings) and not url.startswith(("s3://", "redis://", "rediss://")):
        return [
            (State.WARN, "a file store next to PostgreSQL: every replica and worker must share the directory")
        ]
    return []
