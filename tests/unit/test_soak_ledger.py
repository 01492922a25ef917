"""The soak's ledger on made-up facts: what counts as lost, double, expired or orphaned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from riskhub.events import LIMIT_BREACHED, SNAPSHOT_UPDATED, event_id_for

from soak.facts import Facts, OutboxRow, Row
from soak.ledger import build_ledger
from soak.load import Write
from soak.topology import WORKER_NAMES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(
    version: str, *, expires_s: float = 3600, stage: str = "paper", blobs: frozenset[str] = frozenset()
) -> Row:
    return Row("w1", version, f"h-{version}", "gateway", stage, at(expires_s), blobs)


def write(
    r: Row, status: int | None = 201, *, kind: str = "new", blobs: frozenset[str] = frozenset()
) -> Write:
    answered = None if status is None else 1.0
    return Write(kind, r.world, r.version, r.stage, r.actor, r.hash, blobs, 0, 0.0, answered, status, None, 1)


def facts_for(rows: list[Row], outcomes: dict[str, tuple[str, datetime]]) -> Facts:
    """Stored rows, each with its published event on the topic, the given outcomes and, for each
    processed key, one row per worker."""
    facts = Facts()
    for n, r in enumerate(rows, start=1):
        facts.rows[(r.world, r.version)] = r
        facts.outbox.append(OutboxRow(n, r.world, r.version, SNAPSHOT_UPDATED, event_id_for(r.key), True))
        facts.topic.append((SNAPSHOT_UPDATED, event_id_for(r.key)))
        facts.blobs |= r.blobs
    facts.outcomes = dict(outcomes)
    for key, (outcome, _) in outcomes.items():
        if outcome == "processed":
            facts.worker_rows += [(key, worker) for worker in sorted(WORKER_NAMES)]
            facts.breaches[key] = []
    return facts


def test_an_event_without_outcome_that_expired_before_a_later_one_was_handled_is_an_expired_drop() -> None:
    short, later = row("v1", expires_s=1), row("v2")
    ledger = build_ledger(
        [write(short), write(later)], facts_for([short, later], {later.key: ("processed", at(2))})
    )
    assert ledger.ok, [line for line in ledger.lines if line.bad]
    assert "expired drops 1" in next(line.note for line in ledger.lines if line.label == "events handled")


def test_an_event_skipped_while_still_fresh_is_lost() -> None:
    short, later = row("v1", expires_s=5), row("v2")
    ledger = build_ledger(
        [write(short), write(later)], facts_for([short, later], {later.key: ("processed", at(2))})
    )
    assert ledger.lost["not handled (nor provably expired)"] == 1 and not ledger.ok


def test_an_event_with_no_later_outcome_in_its_world_is_not_provably_expired() -> None:
    last = row("v1", expires_s=1)
    ledger = build_ledger([write(last)], facts_for([last], {}))
    assert ledger.lost["not handled (nor provably expired)"] == 1


def test_an_acknowledged_snapshot_stored_with_another_hash_is_lost() -> None:
    stored = row("v1")
    answered = write(stored)
    answered.hash = "h-other"
    ledger = build_ledger([answered], facts_for([stored], {stored.key: ("processed", at(1))}))
    assert ledger.lost["acknowledged, not stored"] == 1


def test_a_breach_event_id_twice_on_the_topic_is_a_double_effect() -> None:
    live = row("v1", stage="live")
    facts = facts_for([live], {live.key: ("processed", at(1))})
    facts.breaches[live.key] = [{"metric": "var_99", "severity": "breach"}]
    breach_id = event_id_for(f"w1|v1|{live.hash}|var_99")
    facts.outbox.append(OutboxRow(9, "w1", "v1", LIMIT_BREACHED, breach_id, True))
    facts.topic += [(LIMIT_BREACHED, breach_id)] * 2
    ledger = build_ledger([write(live)], facts)
    assert ledger.double["breach event id twice on the topic"] == 1
    assert ledger.lost["breach not announced"] == 0


def test_blobs_of_a_409_are_unreferenced_by_design_and_any_other_unreferenced_blob_is_an_orphan() -> None:
    stored = row("v1", blobs=frozenset({"a"}))
    conflict = write(row("v1"), 409, kind="conflict", blobs=frozenset({"b"}))
    facts = facts_for([stored], {stored.key: ("processed", at(1))})
    facts.blobs |= {"b", "c"}
    ledger = build_ledger([write(stored), conflict], facts)
    assert ledger.orphans == 1
    assert "put for a 409'd write 1" in next(
        line.note for line in ledger.lines if line.label == "blobs in S3"
    )
