"""A worker for end-to-end tests in another process: it always fails on versions named
``doomed-*`` (so their events are retried, then dead-lettered) and does nothing otherwise."""

from __future__ import annotations

from typing import Any

from riskhub.risk.workers import SnapshotView, Worker


async def doomed(view: SnapshotView) -> dict[str, Any]:
    """Raise on a doomed version."""
    version = str(view.stored.get("version"))
    if version.startswith("doomed-"):
        raise RuntimeError(f"version {version} is doomed")
    return {}


DOOMED = Worker("doomed", doomed)
