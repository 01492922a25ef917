"""Faults on a schedule, one at a time: the broker frozen (SIGSTOP/SIGCONT), Redis restarted
(its keys lost), a worker and a serve process killed with SIGKILL and started again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from soak.topology import Topology

KINDS = ("broker paused", "redis restarted", "worker kill -9", "serve kill -9")
CYCLE_S = 150.0  # one round of the four faults per this much soak (at least one round)


@dataclass(frozen=True)
class Fault:
    """What to break, when (seconds into the load) and which replica (for kills)."""

    at_s: float
    kind: str
    replica: int = 0


@dataclass(frozen=True)
class FaultRecord:
    """What happened: seconds into the load when it began and when everything was back."""

    kind: str
    target: str
    began_s: float
    back_s: float


def schedule(duration_s: float) -> list[Fault]:
    """The four faults, round after round, evenly spread; kills alternate between replicas."""
    rounds = max(1, round(duration_s / CYCLE_S))
    count = rounds * len(KINDS)
    step = duration_s / (count + 1)
    return [
        Fault(at_s=step * (n + 1), kind=KINDS[n % len(KINDS)], replica=(n // len(KINDS)) % 2)
        for n in range(count)
    ]


def inject(topology: Topology, fault: Fault, broker_pause_s: float) -> str:
    """Break one thing and bring it back (blocking); returns the name of what was broken."""
    if fault.kind == "broker paused":
        topology.kafka.pause()
        try:
            time.sleep(broker_pause_s)
        finally:
            topology.kafka.resume()
        return topology.kafka.name
    if fault.kind == "redis restarted":
        topology.redis.stop()
        time.sleep(1.0)
        topology.redis.start()
        return topology.redis.name
    group = topology.workers if fault.kind.startswith("worker") else topology.serves
    process = group[fault.replica % len(group)]
    process.kill()
    time.sleep(1.0)
    process.start(timeout=60)
    return process.name


async def run_faults(
    topology: Topology,
    faults: list[Fault],
    started: float,
    broker_pause_s: float,
    progress: Callable[[str], None] = lambda _: None,
) -> list[FaultRecord]:
    """Inject each fault at its time (``started``: ``time.monotonic()`` when the load began)."""
    records = []
    for fault in faults:
        await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
        began = time.monotonic() - started
        target = await asyncio.to_thread(inject, topology, fault, broker_pause_s)
        record = FaultRecord(fault.kind, target, began, time.monotonic() - started)
        progress(
            f"soak: {record.began_s:5.1f} s  {record.kind} ({record.target}), back at {record.back_s:.1f} s"
        )
        records.append(record)
    return records
