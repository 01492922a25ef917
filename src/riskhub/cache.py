"""Latest-snapshot cache per world and per (world, stage).

The cache is an accelerator, never the truth: a miss or an error falls back to the store, and an
entry is only ever replaced by a newer snapshot (greatest ``as_of``, ties by ``created_at``), so a
retried old version or a backfill cannot regress it. Expired entries are returned as they are:
the hub must answer "expired", not fall back to an older snapshot.

A shared store needs a shared cache: an in-process cache next to PostgreSQL, or next to a SQLite
file that ``serve --workers N`` processes share, would keep serving what another process has
since replaced, so those combinations get ``NoCache``. A Redis entry lives
at most ``max_age_s``: a refresh the hub could not make (Redis down, the process gone between
commit and refresh) leaves an older snapshot "latest" for that long at most, never for its TTL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from riskhub.config import CACHE_MAX_AGE_S, CACHE_PREFIX
from riskhub.errors import CacheUnavailable, translated
from riskhub.model import StoredSnapshot, us_from_utc, utc_from_us


def _driver_errors() -> AbstractContextManager[None]:
    """This adapter's one boundary: redis-py's errors become ``CacheUnavailable``."""
    return translated((RedisError,), CacheUnavailable, "cache")


class LatestCache(Protocol):
    """Latest snapshot per world (stage=None) and per world+stage."""

    async def get(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        """The cached latest, or None on a miss."""

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> int:
        """Cache ``snapshot`` under each scope (None: the world; else a stage) where it is newer
        than the entry; returns how many entries it wrote. Callers only offer a snapshot for
        scopes where the store says it is the newest, so an empty cache is never filled with an
        older snapshot."""

    async def forget(self, world_id: str, scopes: Iterable[str | None]) -> None:
        """Drop a world's entries in these scopes (a retracted version may be one of them)."""

    async def ping(self) -> None:
        """Raise unless the cache answers."""

    async def close(self) -> None:
        """Release connections."""


class MemoryCache:
    """In-process cache: two dicts, bounded by the number of worlds x stages."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str | None], StoredSnapshot] = {}

    async def get(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        """Dictionary lookup."""
        return self._entries.get((world_id, stage))

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> int:
        """Keep the newer of the entry and ``snapshot`` in each scope."""
        written = 0
        for scope in scopes:
            key = (snapshot.world_id, scope)
            current = self._entries.get(key)
            if current is None or snapshot.newer_than(current):
                self._entries[key] = snapshot
                written += 1
        return written

    async def forget(self, world_id: str, scopes: Iterable[str | None]) -> None:
        """Delete the entries."""
        for scope in scopes:
            self._entries.pop((world_id, scope), None)

    async def ping(self) -> None:
        """Always up."""

    async def close(self) -> None:
        """Nothing to release."""


class NoCache:
    """Every read goes to the store (a shared store without a shared cache)."""

    async def get(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        """Always a miss."""
        return None

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> int:
        """Nothing to keep."""
        return 0

    async def forget(self, world_id: str, scopes: Iterable[str | None]) -> None:
        """Nothing kept."""

    async def ping(self) -> None:
        """Always up."""

    async def close(self) -> None:
        """Nothing to release."""


# Replace the entry only if the offered snapshot ranks at least as high; value and expiry are
# set by one SET ... PX inside the script, so no reader ever sees one without the other.
# Every scope's key in one call (the payload crosses the network once); only the stored rank is
# read back (GETRANGE: the value may be megabytes). The keys of one world: one node, no cluster.
_OFFER_IF_NEWER = """
local value = ARGV[1] .. ARGV[2]
local written = 0
for _, key in ipairs(KEYS) do
  local current = redis.call('GETRANGE', key, 0, 39)
  if current == '' or current <= ARGV[1] then
    redis.call('SET', key, value, 'PX', ARGV[3])
    written = written + 1
  end
end
return written
"""
_RANK_BYTES = 40
# Microseconds from 0001-01-01 to the Unix epoch: ranks count from year 1, never negative, so 20
# zero-padded digits sort as time does (before 1970 too).
_RANK_ORIGIN_US = 62_135_596_800_000_000


class RedisCache:
    """Latest snapshots in Redis, shared by every hub replica; expiry follows each snapshot's TTL.

    A key holds ``rank`` (as_of and created_at in microseconds, 20 digits each, so string order
    is time order), the metadata as JSON, a newline, and the payload.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = CACHE_PREFIX,
        clock: Callable[[], datetime],
        max_age_s: float = CACHE_MAX_AGE_S,
    ) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._prefix = prefix
        self._clock = clock
        self._max_age_ms = int(max_age_s * 1000)
        self._offer = self._redis.register_script(_OFFER_IF_NEWER)

    def _key(self, world_id: str, stage: str | None) -> str:
        return f"{self._prefix}latest:{world_id}" + ("" if stage is None else f":{stage}")

    async def get(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        """The cached latest, or None."""
        with _driver_errors():
            raw = await self._redis.get(self._key(world_id, stage))
        return None if raw is None else _decode(raw)

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> int:
        """Atomically keep the newer snapshot per scope; the key expires with the snapshot, or
        after ``max_age_s`` if that comes first."""
        ttl_ms = min(int((snapshot.expires_at - self._clock()).total_seconds() * 1000), self._max_age_ms)
        if ttl_ms <= 0:
            return 0
        keys = [self._key(snapshot.world_id, scope) for scope in scopes]
        if not keys:
            return 0
        rank, value = _encode(snapshot)
        with _driver_errors():
            return int(await self._offer(keys=keys, args=[rank, value, ttl_ms]))

    async def forget(self, world_id: str, scopes: Iterable[str | None]) -> None:
        """DEL the world's keys in these scopes."""
        keys = [self._key(world_id, scope) for scope in scopes]
        with _driver_errors():
            if keys:
                await self._redis.delete(*keys)

    async def ping(self) -> None:
        """PING."""
        with _driver_errors():
            await cast("Awaitable[bool]", self._redis.ping())

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _encode(snapshot: StoredSnapshot) -> tuple[bytes, bytes]:
    rank = b"%020d%020d" % (
        us_from_utc(snapshot.as_of) + _RANK_ORIGIN_US,
        us_from_utc(snapshot.created_at) + _RANK_ORIGIN_US,
    )
    meta = orjson.dumps(
        [
            snapshot.world_id,
            snapshot.version,
            snapshot.hash,
            snapshot.content_sha256,
            us_from_utc(snapshot.expires_at),
            snapshot.actor,
            snapshot.stage,
        ]
    )
    return rank, meta + b"\n" + snapshot.payload


def _decode(raw: bytes) -> StoredSnapshot:
    meta_end = raw.index(b"\n", _RANK_BYTES)
    world_id, version, hash_, content_sha256, expires_us, actor, stage = orjson.loads(
        raw[_RANK_BYTES:meta_end]
    )
    return StoredSnapshot(
        world_id=world_id,
        version=version,
        hash=hash_,
        content_sha256=content_sha256,
        as_of=utc_from_us(int(raw[:20]) - _RANK_ORIGIN_US),
        created_at=utc_from_us(int(raw[20:40]) - _RANK_ORIGIN_US),
        expires_at=utc_from_us(expires_us),
        actor=actor,
        stage=stage,
        payload=raw[meta_end + 1 :],
    )
