"""The soak's ledger: what producers were told against what the parts hold at the end.

lost   = an acknowledged snapshot not stored (or stored with another hash); a stored snapshot
         without its event, with its event not on the topic, or not handled, unless it was
         provably dropped as expired; a processed key without every worker's row; a DLQ outcome
         without its DLQ record; a live breach not announced on the topic.
double = a snapshot with two events in the outbox; an outcome or a worker row for no stored
         snapshot, or a second one; a risk_limit_breached event id twice (outbox or topic).
orphan = a blob in the S3 prefix that no stored snapshot references, except those put for a
         write the hub refused (409) or never acknowledged: "unreferenced by design".

"Provably expired": the consumer handles a world's events in POST order, so an event without
an outcome was dropped as expired only if it had expired by the time any later event of its
world got its outcome (``processed_at``). Each world ends with a long-lived sentinel for this.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from riskhub.events import LIMIT_BREACHED, SNAPSHOT_UPDATED, event_id_for
from riskhub.model import OUTCOME_DLQ, OUTCOME_PROCESSED

from soak.facts import Facts, Row
from soak.load import Write
from soak.topology import WORKER_NAMES


@dataclass(frozen=True)
class Line:
    """One row of the ledger table."""

    label: str
    value: int | str
    note: str = ""
    bad: bool = False


@dataclass
class Ledger:
    """The table, the three verdict counts and the latency samples (ms)."""

    lines: list[Line] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    double: Counter[str] = field(default_factory=Counter)
    orphans: int = 0
    post_ms: list[float] = field(default_factory=list)
    to_risk_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing doubled, no orphan blob, no line marked bad."""
        return not any(line.bad for line in self.lines)

    def add(self, label: str, value: int | str, note: str = "", *, bad: bool = False) -> None:
        """Append a line."""
        self.lines.append(Line(label, value, note, bad))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1), linearly interpolated; NaN without values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def breakdown(counts: Counter[str]) -> str:
    """``a 2, b 1`` for the non-zero counts."""
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "-"


def build_ledger(writes: Sequence[Write], facts: Facts) -> Ledger:
    """Compare the writes with the facts."""
    ledger = Ledger()
    _writes(ledger, writes, facts)
    _events(ledger, facts)
    _handling(ledger, facts)
    _breaches(ledger, facts)
    _blobs(ledger, writes, facts)
    _latencies(ledger, writes, facts)
    lost, double = sum(ledger.lost.values()), sum(ledger.double.values())
    ledger.add("LOST", lost, breakdown(ledger.lost), bad=lost > 0)
    ledger.add("DOUBLE", double, breakdown(ledger.double), bad=double > 0)
    ledger.add("ORPHAN blobs", ledger.orphans, bad=ledger.orphans > 0)
    return ledger


def _writes(ledger: Ledger, writes: Sequence[Write], facts: Facts) -> None:
    acked: dict[tuple[str, str], str] = {}
    for write in writes:
        if write.acknowledged:
            acked.setdefault((write.world, write.version), write.hash)
    statuses = Counter(write.status for write in writes)
    ledger.add("writes sent", len(writes), _kinds(writes))
    ledger.add(
        "snapshots acknowledged",
        len(acked),
        f"answers 201: {statuses[201]}, 200: {statuses[200]} (duplicates and failed-over retries)",
    )
    ledger.add("answered 409 (conflict)", statuses[409], "same version, other body")
    failed_over = [w for w in writes if w.sends > 1]
    ledger.add(
        "writes failed over",
        len(failed_over),
        f"sent again to the other serve process: {sum(w.sends - 1 for w in failed_over)} sends",
    )
    unexpected = [w for w in writes if w.status is not None and not w.expected]
    refused = [w for w in writes if w.status is None and w.answered is not None]
    unanswered = [w for w in writes if w.answered is None]
    ledger.add("unexpected answers", len(unexpected), _examples(unexpected), bad=bool(unexpected))
    ledger.add("refused otherwise", len(refused), _examples(refused), bad=bool(refused))
    ledger.add("never answered", len(unanswered), _examples(unanswered), bad=bool(unanswered))
    ledger.lost["acknowledged, not stored"] = sum(
        1 for wv, hash_ in acked.items() if wv not in facts.rows or facts.rows[wv].hash != hash_
    )
    never_acked = sum(1 for wv in facts.rows if wv not in acked)
    ledger.add("stored (rows)", len(facts.rows), f"{never_acked} never acknowledged (answer lost in a kill)")


def _kinds(writes: Iterable[Write]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in Counter(w.kind for w in writes).most_common())


def _examples(writes: Sequence[Write]) -> str:
    return "; ".join(f"{w.kind} {w.world}/{w.version}: {w.status} {w.error or ''}"[:160] for w in writes[:3])


def _events(ledger: Ledger, facts: Facts) -> None:
    snapshot_events = [o for o in facts.outbox if o.event_type == SNAPSHOT_UPDATED]
    per_snapshot = Counter((o.world, o.version) for o in snapshot_events)
    ledger.lost["stored without event"] = sum(1 for wv in facts.rows if wv not in per_snapshot)
    ledger.double["second event of a snapshot"] = sum(n - 1 for n in per_snapshot.values())
    ledger.lost["event never published"] = sum(1 for o in snapshot_events if not o.published)
    on_topic = Counter(event_id for kind, event_id in facts.topic if kind == SNAPSHOT_UPDATED)
    ledger.lost["event not on the topic"] = sum(
        1 for row in facts.rows.values() if event_id_for(row.key) not in on_topic
    )
    published = sum(1 for o in snapshot_events if o.published)
    ledger.add("events (outbox rows, published)", len(snapshot_events), f"{published} published")
    resent = sum(on_topic.values()) - len(on_topic)
    ledger.add(
        "events on the topic", len(on_topic), f"+{resent} re-sent copies (absorbed by consumer dedupe)"
    )


def _handling(ledger: Ledger, facts: Facts) -> None:
    """Every stored snapshot's event: processed, dead-lettered, or provably dropped as expired."""
    outcomes = Counter(outcome for outcome, _ in facts.outcomes.values())
    expired, unhandled = _unhandled(facts)
    ledger.lost["not handled (nor provably expired)"] = len(unhandled)
    ledger.add(
        "events handled",
        outcomes[OUTCOME_PROCESSED] + len(expired) + outcomes[OUTCOME_DLQ],
        f"processed keys {outcomes[OUTCOME_PROCESSED]} + expired drops {len(expired)}"
        f" + DLQ outcomes {outcomes[OUTCOME_DLQ]}; not handled: {_keys(unhandled)}",
    )
    stored_keys = {row.key for row in facts.rows.values()}
    ledger.double["outcome for no stored snapshot"] = sum(
        1 for key in facts.outcomes if key not in stored_keys
    )
    processed = {key for key, (outcome, _) in facts.outcomes.items() if outcome == OUTCOME_PROCESSED}
    per_row = Counter(facts.worker_rows)
    ledger.double["worker row twice"] = sum(n - 1 for n in per_row.values())
    ledger.double["worker row for no processed key"] = sum(1 for key, _ in per_row if key not in processed)
    ledger.lost["processed key without its worker rows"] = sum(
        1 for key in processed if any((key, worker) not in per_row for worker in WORKER_NAMES)
    )
    risk_rows = sum(1 for _, worker in per_row if worker == "risk")
    ledger.add(
        "risk results (risk worker rows)", risk_rows, f"workers per event: {', '.join(sorted(WORKER_NAMES))}"
    )
    dlq = {key for key, (outcome, _) in facts.outcomes.items() if outcome == OUTCOME_DLQ}
    ledger.lost["DLQ outcome without DLQ record"] = len(dlq - set(facts.dlq_keys))
    ledger.add(
        "DLQ records", len(facts.dlq_keys), f"for {len(dlq)} dead-lettered keys (a redelivery re-sends)"
    )


def _keys(rows: Sequence[Row]) -> str:
    return ", ".join(f"{r.world}/{r.version}" for r in rows[:3]) or "none"


def _unhandled(facts: Facts) -> tuple[list[Row], list[Row]]:
    """(provably expired drops, the rest) among stored snapshots without an outcome."""
    order = {(o.world, o.version): o.id for o in facts.outbox if o.event_type == SNAPSHOT_UPDATED}
    by_world: dict[str, list[Row]] = {}
    for wv, row in sorted(facts.rows.items(), key=lambda item: order.get(item[0], 0)):
        by_world.setdefault(wv[0], []).append(row)
    expired: list[Row] = []
    unhandled: list[Row] = []
    for rows in by_world.values():
        later_handled_at: datetime | None = None  # earliest outcome of a later event of the world
        for row in reversed(rows):
            outcome = facts.outcomes.get(row.key)
            if outcome is not None:
                at = outcome[1]
                later_handled_at = at if later_handled_at is None else min(later_handled_at, at)
            elif later_handled_at is not None and row.expires_at <= later_handled_at:
                expired.append(row)
            else:
                unhandled.append(row)
    return expired, unhandled


def _breaches(ledger: Ledger, facts: Facts) -> None:
    """Each live snapshot's breached metrics: one risk_limit_breached event each, never two."""
    live = {row.key: row for row in facts.rows.values() if row.stage == "live"}
    expected = set()
    for key, breaches in facts.breaches.items():
        row = live.get(key)
        if row is None:
            continue
        for metric in {b["metric"] for b in breaches if b.get("severity") == "breach"}:
            expected.add(event_id_for(f"{row.world}|{row.version}|{row.hash}|{metric}"))
    in_outbox = Counter(o.event_id for o in facts.outbox if o.event_type == LIMIT_BREACHED)
    on_topic = Counter(event_id for kind, event_id in facts.topic if kind == LIMIT_BREACHED)
    ledger.lost["breach not announced"] = len(expected - set(on_topic))
    ledger.double["breach in the outbox twice"] = sum(n - 1 for n in in_outbox.values())
    ledger.double["breach event id twice on the topic"] = sum(n - 1 for n in on_topic.values())
    ledger.double["breach event for no live breach"] = len(set(on_topic) - expected)
    ledger.add("breach events (live, var_99)", len(on_topic), f"{len(expected)} expected from the risk rows")


def _blobs(ledger: Ledger, writes: Sequence[Write], facts: Facts) -> None:
    referenced = set().union(*(row.blobs for row in facts.rows.values()))
    conflicted = set().union(*(w.blobs for w in writes if w.status == 409))
    refused = set().union(*(w.blobs for w in writes if not w.acknowledged and w.status != 409))
    unreferenced = facts.blobs - referenced
    by_conflict = unreferenced & conflicted
    by_refusal = (unreferenced - conflicted) & refused
    orphans = unreferenced - conflicted - refused
    ledger.orphans = len(orphans)
    missing = referenced - facts.blobs
    ledger.lost["referenced blob missing from S3"] = len(missing)
    ledger.add(
        "blobs in S3",
        len(facts.blobs),
        f"referenced {len(facts.blobs & referenced)}; unreferenced by design: put for a 409'd write"
        f" {len(by_conflict)}, for a refused or unanswered write {len(by_refusal)}",
    )


def _latencies(ledger: Ledger, writes: Sequence[Write], facts: Facts) -> None:
    for write in writes:
        if not write.acknowledged or write.answered is None:
            continue
        ledger.post_ms.append((write.answered - write.started) * 1000)
        outcome = facts.outcomes.get(write.key)
        if write.status == 201 and outcome is not None and outcome[0] == OUTCOME_PROCESSED:
            ledger.to_risk_ms.append((outcome[1].timestamp() - write.answered) * 1000)
