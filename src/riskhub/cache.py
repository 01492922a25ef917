"""Latest-snapshot cache per world and per (world, stage).

The cache is an accelerator, never the truth: a miss or an error falls back to the store, and an
entry is only ever replaced by a newer snapshot (greatest ``as_of``, ties by ``created_at``), so a
retried old version or a backfill cannot regress it. Expired entries are returned as they are:
the hub must answer "expired", not fall back to an older snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from riskhub.store import StoredSnapshot


class LatestCache(Protocol):
    """Latest snapshot per world (stage=None) and per world+stage."""

    async def get(self, world_id: str, stage: str | None) -> StoredSnapshot | None:
        """The cached latest, or None on a miss."""

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> None:
        """Cache ``snapshot`` under each scope (None: the world; else a stage) where it is newer
        than the entry. Callers only offer a snapshot for scopes where the store says it is the
        newest, so an empty cache is never filled with an older snapshot."""

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

    async def offer(self, snapshot: StoredSnapshot, scopes: Iterable[str | None]) -> None:
        """Keep the newer of the entry and ``snapshot`` in each scope."""
        for scope in scopes:
            key = (snapshot.world_id, scope)
            current = self._entries.get(key)
            if current is None or snapshot.newer_than(current):
                self._entries[key] = snapshot

    async def ping(self) -> None:
        """Always up."""

    async def close(self) -> None:
        """Nothing to release."""
