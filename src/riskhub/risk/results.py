"""A snapshot's risk results as readers get them (the results API, ``riskhub risk show``).

Pure: built from the stored snapshot and its recorded outcome. The status says how far the
consumer got: ``pending`` (no outcome yet; an expired snapshot's event is dropped, so it stays
pending and says ``expired``), ``done`` (the risk worker's row), ``failed`` (dead-lettered, with
the error).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from riskhub.model import OUTCOME_DLQ, RiskRecord, StoredSnapshot

RISK_WORKER = "risk"  # the worker whose row the results API serves
PENDING, DONE, FAILED = "pending", "done", "failed"
# What a history entry keeps: enough for a chart, not the per-id and per-scenario tables.
_SUMMARY = ("method", "figures", "worst_stress", "blocking")


def risk_answer(snapshot: StoredSnapshot, record: RiskRecord | None, now: datetime) -> dict[str, Any]:
    """The whole answer for one snapshot."""
    answer = _head(snapshot, record, now)
    row = record.result if record is not None and record.outcome != OUTCOME_DLQ else None
    answer.update(
        method=None,
        figures=None,
        contributions=[],
        stress=[],
        worst_stress=None,
        findings=[],
        breaches=[],
        blocking=False,
    )
    if row is not None:
        answer.update({key: row[key] for key in answer if key in row})
    return answer


def risk_summary(snapshot: StoredSnapshot, record: RiskRecord | None, now: datetime) -> dict[str, Any]:
    """One point of a world's risk history: figures and breaches, no per-id tables."""
    whole = risk_answer(snapshot, record, now)
    summary = {key: whole[key] for key in (*_head(snapshot, record, now), *_SUMMARY)}
    summary["breaches"] = whole["breaches"]
    return summary


def _head(snapshot: StoredSnapshot, record: RiskRecord | None, now: datetime) -> dict[str, Any]:
    status = PENDING if record is None else FAILED if record.outcome == OUTCOME_DLQ else DONE
    head: dict[str, Any] = {
        "world_id": snapshot.world_id,
        "version": snapshot.version,
        "as_of": _iso(snapshot.as_of),
        "stage": snapshot.stage,
        "actor": snapshot.actor,
        "hash": snapshot.hash,
        "expired": snapshot.is_expired(now),
        "status": status,
        "computed_at": None if record is None else _iso(record.processed_at),
    }
    if status == FAILED:
        head["error"] = record.error if record is not None else None
    return head


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
