"""``make soak``: the production topology on loopback under a bounded, mixed load with faults on a
schedule, ending with a ledger of what was acknowledged, stored, handled, lost and doubled.

``run_soak`` is the one entry point: ``python -m soak`` (``make soak``) and the short variant in
``tests/e2e/test_soak.py`` both call it. Services are stopped at the end, also on failure; the
work directory (service and process logs) is kept when the soak fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from soak.facts import read_facts
from soak.faults import DEFAULT_FAULTS, FAULT_SPACING_S, FaultRecord, run_faults, schedule
from soak.ledger import Ledger, build_ledger
from soak.load import LoadGenerator, Write
from soak.memory import Memory, RssTracker
from soak.topology import Topology, running_topology


@dataclass(frozen=True)
class SoakOptions:
    """How long, how wide and how hard."""

    duration_s: float = 600.0
    worlds: int = 50
    rate: float = 15.0  # writes per second, all kinds
    concurrency: int = 16  # writes in flight at most
    seed: int = 19
    broker_pause_s: float = 5.0  # under the relay producer's 10 s request timeout
    faults: tuple[str, ...] = DEFAULT_FAULTS  # in turn, keys of soak.faults.FAULTS
    fault_spacing_s: float = FAULT_SPACING_S
    drain_timeout_s: float = 120.0
    pin: bool = True  # runner on CPU 0, everything it starts on CPU 1 (as make bench)
    workdir: Path | None = None  # default: a fresh temporary directory
    keep: bool = False  # keep the work directory even when the soak passes


@dataclass
class SoakResult:
    """The ledger and what surrounded it."""

    options: SoakOptions
    workdir: Path
    ledger: Ledger
    drained_s: float | None
    memory: dict[str, Memory] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)  # hub processes down at the end

    @property
    def ok(self) -> bool:
        """Nothing lost or doubled, no orphan, drained, every process up."""
        return self.ledger.ok and self.drained_s is not None and not self.exits

    def report(self) -> str:
        """The printed table."""
        from soak.report import render

        return render(self)


Progress = Callable[[str], None]


async def run_soak(options: SoakOptions, progress: Progress = lambda _: None) -> SoakResult:
    """Start the topology, run the load and the faults, drain, read the ledger, stop everything."""
    root = options.workdir or Path(tempfile.mkdtemp(prefix="riskhub-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    progress(f"soak: work directory {root}; starting PostgreSQL, Redis, S3, Kafka, 2 serve, 2 worker")
    with _aws_credentials():
        async with running_topology(root, pin=options.pin) as topology:
            tracker = RssTracker(topology.pids)
            stop = asyncio.Event()
            sampling = asyncio.create_task(tracker.run(stop))
            try:
                progress(f"soak: topology up; {options.duration_s:.0f} s of load with faults")
                writes, faults, drained_s = await _load_and_faults(topology, options, progress)
                progress("soak: reading the ledger (tables, topics, S3)")
                facts = await read_facts(topology)
            finally:
                stop.set()
                await sampling
            tracker.sample()
            exits = topology.unexpected_exits()
    result = SoakResult(options, root, build_ledger(writes, facts), drained_s, tracker.samples, faults, exits)
    if result.ok and not options.keep:
        shutil.rmtree(root, ignore_errors=True)
    return result


async def _load_and_faults(
    topology: Topology, options: SoakOptions, progress: Progress
) -> tuple[list[Write], list[FaultRecord], float | None]:
    async with LoadGenerator(
        topology, worlds=options.worlds, rate=options.rate, concurrency=options.concurrency, seed=options.seed
    ) as load:
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            faulting = tasks.create_task(
                run_faults(
                    topology,
                    schedule(options.duration_s, options.faults, options.fault_spacing_s),
                    started,
                    options.broker_pause_s,
                    progress,
                )
            )
            await load.run(options.duration_s)
        progress(f"soak: load done ({len(load.writes)} writes); one sentinel per world, then drain")
        sentinels = await load.sentinels()
        drained_s = await _wait_drained(topology, sentinels, options.drain_timeout_s)
    return load.writes, faulting.result(), drained_s


async def _wait_drained(topology: Topology, sentinels: list[Write], timeout_s: float) -> float | None:
    """Seconds until every sentinel has an outcome and the outbox is empty (None: timed out)."""
    keys = [write.key for write in sentinels if write.acknowledged]
    started = time.monotonic()
    conn = await asyncpg.connect(topology.postgres.dsn)
    try:
        while time.monotonic() - started < timeout_s:
            handled = await conn.fetchval(
                "SELECT count(*) FROM risk_processed WHERE dedupe_key = ANY($1::text[])", keys
            )
            pending = await conn.fetchval("SELECT count(*) FROM risk_outbox WHERE status = 'pending'")
            if handled == len(keys) and pending == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return None


@contextlib.contextmanager
def _aws_credentials() -> Iterator[None]:
    """moto's credentials for the producer's S3 client (botocore reads them from the env)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.setdefault(name, "testing")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
