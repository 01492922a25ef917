"""Workers for tests: one that fails a set number of times, one that always fails."""

from __future__ import annotations

from typing import Any

from riskhub.risk.workers import SnapshotView, Worker

FAILURES = {"remaining": 0}
FAILING_VERSIONS: set[str] = set()  # these always fail
UNENCODABLE_VERSIONS: set[str] = set()  # these return a row no store can hold
CALLS: list[str] = []


async def flaky(view: SnapshotView) -> dict[str, Any]:
    """Fail while FAILURES["remaining"] > 0 (always for FAILING_VERSIONS), then succeed."""
    CALLS.append(str(view.stored.get("version")))
    if view.stored.get("version") in FAILING_VERSIONS:
        raise RuntimeError("permanent failure")
    if view.stored.get("version") in UNENCODABLE_VERSIONS:
        return {"ids": {"a", "b"}}  # a set: not JSON
    if FAILURES["remaining"] > 0:
        FAILURES["remaining"] -= 1
        raise RuntimeError("transient failure")
    return {"version": view.stored.get("version")}


FLAKY = Worker("flaky", flaky)
