"""Workers for tests: one that fails a set number of times, one that always fails."""

from __future__ import annotations

from typing import Any

from riskhub.workers import SnapshotView, Worker

FAILURES = {"remaining": 0}
CALLS: list[str] = []


async def flaky(view: SnapshotView) -> dict[str, Any]:
    """Fail while FAILURES["remaining"] > 0, then succeed."""
    CALLS.append(str(view.stored.get("version")))
    if FAILURES["remaining"] > 0:
        FAILURES["remaining"] -= 1
        raise RuntimeError("transient failure")
    return {"version": view.stored.get("version")}


FLAKY = Worker("flaky", flaky)
