"""The soak's printed report: the ledger, latencies, memory of every process and the faults."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from soak.faults import FaultRecord
from soak.ledger import Ledger, percentile
from soak.memory import Memory

if TYPE_CHECKING:
    from soak import SoakResult


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A plain-text table with aligned columns (``right``: indexes of right-aligned columns)."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def ledger_table(ledger: Ledger) -> str:
    """The ledger lines; a bad line is marked ``<-``."""
    rows = [(line.label, line.value, line.note + ("  <-" if line.bad else "")) for line in ledger.lines]
    return table(("ledger", "count", "detail"), rows, right=(1,))


def latency_table(ledger: Ledger) -> str:
    """p50 / p99 / max of the POST latency and of POST answer -> risk result."""
    rows = []
    for label, samples in (
        ("POST, acknowledged (incl. failover)", ledger.post_ms),
        ("POST answer -> risk result (processed_at)", ledger.to_risk_ms),
    ):
        stats = [percentile(samples, q) for q in (0.5, 0.99, 1.0)]
        rows.append((label, *(f"{value:.0f}" for value in stats), len(samples)))
    return table(("latency", "p50 ms", "p99 ms", "max ms", "n"), rows, right=(1, 2, 3, 4))


def memory_table(memory: Mapping[str, Memory], faults: Sequence[FaultRecord]) -> str:
    """RSS per process at the start and the end of the load, its peak, and its restarts."""
    restarts = Counter(record.target for record in faults if record.kind != "broker paused")
    rows = [
        (name, _mib(m.start), _mib(m.end), _mib(m.peak), restarts.get(name, 0)) for name, m in memory.items()
    ]
    return table(
        ("process (postgres: PSS of all backends)", "start MiB", "end MiB", "peak MiB", "restarts"),
        rows,
        (1, 2, 3, 4),
    )


def fault_table(faults: Sequence[FaultRecord]) -> str:
    """When each fault began and when everything was back (seconds into the load)."""
    rows = [(f.kind, f.target, f"{f.began_s:.1f}", f"{f.back_s:.1f}") for f in faults]
    return table(("fault", "target", "began s", "back s"), rows, right=(2, 3))


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def render(result: SoakResult) -> str:
    """The whole report."""
    o = result.options
    drained = f"{result.drained_s:.1f} s" if result.drained_s is not None else "NOT drained (timeout)"
    kept = not result.ok or o.keep  # a passing soak removes its work directory
    head = (
        f"riskhub soak: {o.duration_s:.0f} s of load, {o.worlds} worlds x 3 stages, 2 serve + 2 worker"
        f" processes, {o.rate:g} writes/s (<= {o.concurrency} in flight), seed {o.seed};"
        f" drained {drained} after the load; "
        + (f"logs in {result.workdir}" if kept else "work directory removed (--keep keeps it)")
    )
    verdict = (
        "OK: lost 0, double 0, orphan blobs 0"
        if result.ok
        else f"FAILED: lost {sum(result.ledger.lost.values())}, double {sum(result.ledger.double.values())},"
        f" orphan blobs {result.ledger.orphans}"
        + (f", processes down at the end: {', '.join(result.exits)}" if result.exits else "")
        + ("" if result.drained_s is not None else ", not drained")
    )
    parts = [
        head,
        ledger_table(result.ledger),
        latency_table(result.ledger),
        memory_table(result.memory, result.faults),
        fault_table(result.faults),
        verdict,
    ]
    return "\n\n".join(parts)
