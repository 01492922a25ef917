"""A worker for hub processes under test (unlike flaky_workers, nothing to set from the test):
it always fails on versions starting with ``doomed-``, so their events run out of attempts and go
to the DLQ. Load it with tests/ on PYTHONPATH and
``RISKHUB_WORKERS="riskhub.risk.workers:DEFAULT_WORKERS,doomed_workers:DOOMED"``."""

from __future__ import annotations

from typing import Any

from riskhub.risk.workers import SnapshotView, Worker

DOOMED_PREFIX = "doomed-"


async def fail_if_doomed(view: SnapshotView) -> dict[str, Any]:
    """Raise for a doomed version; otherwise an empty row."""
    version = str(view.stored.get("version"))
    if version.startswith(DOOMED_PREFIX):
        raise RuntimeError(f"version {version!r} is doomed")
    return {}


DOOMED = Worker("doomed", fail_if_doomed)
