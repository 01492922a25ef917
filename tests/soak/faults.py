"""Faults on a schedule, one at a time: the broker frozen (SIGSTOP/SIGCONT), Redis restarted
(its keys lost), a worker and a serve process killed with SIGKILL and started again. Not in the
default rotation: a serve killed while the broker is frozen (``--faults serve-kill-in-freeze``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services import ServerProcess
from soak.topology import Topology

FAULT_SPACING_S = 37.5  # one fault per this much load (16 in 10 minutes), at least one of each kind


@dataclass(frozen=True)
class Fault:
    """What to break (a key of ``FAULTS``), when (seconds into the load) and which replica."""

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


def schedule(duration_s: float, kinds: Sequence[str], spacing_s: float = FAULT_SPACING_S) -> list[Fault]:
    """The kinds in turn, evenly spread over the load; kills alternate between the replicas."""
    count = max(len(kinds), round(duration_s / spacing_s))
    step = duration_s / (count + 1)
    return [
        Fault(at_s=step * (n + 1), kind=kinds[n % len(kinds)], replica=(n // len(kinds)) % 2)
        for n in range(count)
    ]


def _pause_broker(topology: Topology, fault: Fault, pause_s: float) -> str:
    topology.kafka.pause()
    try:
        time.sleep(pause_s)
    finally:
        topology.kafka.resume()
    return topology.kafka.name


def _restart_redis(topology: Topology, fault: Fault, pause_s: float) -> str:
    topology.redis.stop()
    time.sleep(1.0)
    topology.redis.start()
    return topology.redis.name


def _kill(group: list[ServerProcess], fault: Fault) -> str:
    process = group[fault.replica % len(group)]
    process.kill()
    time.sleep(1.0)
    process.start(timeout=60)
    return process.name


def _kill_serve_in_freeze(topology: Topology, fault: Fault, pause_s: float) -> str:
    """A serve dies while the broker holds its relay's pass unanswered: whether the broker
    appended that pass is in doubt, and the other relay sends it again."""
    process = topology.serves[fault.replica % len(topology.serves)]
    topology.kafka.pause()
    try:
        time.sleep(pause_s / 3)
        process.kill()
        time.sleep(1.0)
    finally:
        topology.kafka.resume()
    process.start(timeout=60)
    return process.name


Inject = Callable[[Topology, Fault, float], str]
FAULTS: dict[str, tuple[str, Inject]] = {
    "broker-pause": ("broker paused", _pause_broker),
    "redis-restart": ("redis restarted", _restart_redis),
    "worker-kill": ("worker kill -9", lambda topology, fault, _: _kill(topology.workers, fault)),
    "serve-kill": ("serve kill -9", lambda topology, fault, _: _kill(topology.serves, fault)),
    "serve-kill-in-freeze": ("serve kill -9 in a broker freeze", _kill_serve_in_freeze),
}
DEFAULT_FAULTS = ("broker-pause", "redis-restart", "worker-kill", "serve-kill")


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
        label, inject = FAULTS[fault.kind]
        target = await asyncio.to_thread(inject, topology, fault, broker_pause_s)
        record = FaultRecord(label, target, began, time.monotonic() - started)
        progress(
            f"soak: {record.began_s:5.1f} s  {record.kind} ({record.target}), back at {record.back_s:.1f} s"
        )
        records.append(record)
    return records
