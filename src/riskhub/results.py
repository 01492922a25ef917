"""The results API's reads: a snapshot's risk results, found the way the snapshot reads find it
(the same 404s for a missing or expired latest), answered as ``risk/results.py`` shapes them."""

from __future__ import annotations

from typing import Any

from riskhub.errors import ContractError
from riskhub.hub import Hub
from riskhub.model import RiskRecord, StoredSnapshot
from riskhub.risk.results import RISK_WORKER, risk_answer, risk_summary


class RiskResults:
    """Reads of the ``risk`` worker's rows next to the hub's snapshot reads."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def latest(self, world_id: str, *, stage: str | None = None) -> dict[str, Any]:
        """The risk results of the snapshot ``latest_snapshot`` serves (same 404s)."""
        snapshot = await self._hub.latest_snapshot(world_id, stage=stage)
        return risk_answer(snapshot, await self._record(snapshot), self._hub.clock())

    async def of_version(self, world_id: str, version: str | None) -> dict[str, Any]:
        """The risk results of one version."""
        if version is None:
            raise ContractError("version: required", field="version")
        snapshot = await self._hub.lookup_snapshot(world_id, version=version, as_of=None)
        return risk_answer(snapshot, await self._record(snapshot), self._hub.clock())

    async def history(self, world_id: str, *, limit: int, stage: str | None = None) -> list[dict[str, Any]]:
        """A world's risk figures over its snapshots, newest first (a chart's series)."""
        snapshots = await self._hub.list_snapshots(world_id, limit=limit, stage=stage)
        records = await self._hub.store.risk_records([s.dedupe_key for s in snapshots], RISK_WORKER)
        now = self._hub.clock()
        return [risk_summary(s, records.get(s.dedupe_key), now) for s in snapshots]

    async def _record(self, snapshot: StoredSnapshot) -> RiskRecord | None:
        records = await self._hub.store.risk_records([snapshot.dedupe_key], RISK_WORKER)
        return records.get(snapshot.dedupe_key)
