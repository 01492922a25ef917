"""The soak's load generator: producers on the SDK (``AsyncRiskHubClient``), a paced and bounded
stream of writes over many worlds and the three stages, alternating between the two serve
processes and failing over to the other one when a serve does not answer.

Kinds of write: ``new`` (small, inline), ``large`` (inline, the hub offloads its parts to S3),
``byref`` (the producer offloads its parts to S3 first and sends refs), ``expiring`` (ttl 1-2 s),
``doomed`` (a test worker fails on it: retried, then dead-lettered), ``duplicate`` (the same
bytes again: 200) and ``conflict`` (same version, other body: 409); ``sentinel`` closes each world.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from riskhub.blobs import S3BlobStore
from riskhub.client import AsyncRiskHubClient, HubUnavailable, PreparedSnapshot, RetryPolicy, UnexpectedAnswer
from riskhub.errors import RequestRejected, VersionConflict

from soak.bodies import PRODUCER_INLINE_THRESHOLD, hub_offloaded_addresses, ref_address, snapshot_doc
from soak.topology import BLOB_PREFIX, BUCKET, TOKEN, Topology, http_url

STAGES = ("backtest", "paper", "live")
KIND_WEIGHTS = {
    "new": 34,
    "large": 12,
    "byref": 12,
    "expiring": 12,
    "duplicate": 16,
    "conflict": 10,
    "doomed": 1,
}
EXPECTED_STATUS = {"duplicate": 200, "conflict": 409}  # every other kind: 201
POOL = 200  # recently acknowledged writes kept with their bytes, for duplicates and conflicts
FAILOVERS = 8  # sends of one write, alternating between the serve processes
SDK_RETRY = RetryPolicy(max_attempts=2, backoff_s=0.1, max_backoff_s=0.5, budget_s=2.0)


@dataclass
class Write:
    """One logical write and how the hub answered it (after failovers)."""

    kind: str
    world: str
    version: str
    stage: str
    actor: str
    hash: str
    blobs: frozenset[str]  # content addresses this write put (or made the hub put) into S3
    replica: int  # the serve process tried first
    started: float = 0.0  # time.time()
    answered: float | None = None
    status: int | None = None  # 201 / 200 / 409; None: refused otherwise, or never answered
    error: str | None = None
    sends: int = 0

    @property
    def acknowledged(self) -> bool:
        """The hub said it holds the snapshot (201 stored, 200 already stored)."""
        return self.status in (200, 201)

    @property
    def key(self) -> str:
        """The dedupe key of the snapshot this write sent."""
        return f"{self.world}|{self.version}|{self.hash}|{self.actor}|{self.stage}"

    @property
    def expected(self) -> bool:
        """The answer is the one this kind of write should get. A 200 for a first write is
        expected after a failover: the serve that died had committed it before answering."""
        want = EXPECTED_STATUS.get(self.kind, 201)
        return self.status == want or (want == 201 and self.status == 200 and self.sends > 1)


class LoadGenerator:
    """Paced writes (``rate`` per second, at most ``concurrency`` in flight)."""

    def __init__(self, topology: Topology, *, worlds: int, rate: float, concurrency: int, seed: int) -> None:
        self.topology = topology
        self.worlds, self.rate, self.concurrency = worlds, rate, concurrency
        self.rng = random.Random(seed)
        self.writes: list[Write] = []
        self._pool: deque[tuple[Write, PreparedSnapshot]] = deque(maxlen=POOL)
        self._versions = itertools.count()
        self._kinds, self._weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
        self._plain: list[AsyncRiskHubClient] = []
        self._offloading: AsyncRiskHubClient | None = None

    async def __aenter__(self) -> Self:
        serves = self.topology.serves
        self._plain = [AsyncRiskHubClient(http_url(s), TOKEN, retry=SDK_RETRY, timeout_s=15) for s in serves]
        blobs = S3BlobStore(BUCKET, BLOB_PREFIX, endpoint_url=self.topology.s3.endpoint_url)
        self._offloading = AsyncRiskHubClient(
            http_url(serves[0]), TOKEN, inline_cov_threshold=PRODUCER_INLINE_THRESHOLD, blobs=blobs
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for client in [*self._plain, *filter(None, [self._offloading])]:
            await client.aclose()

    async def run(self, duration_s: float) -> None:
        """Write for ``duration_s`` seconds, then wait for the writes in flight."""
        slots = asyncio.Semaphore(self.concurrency)
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            for n in itertools.count():
                due = started + n / self.rate
                if due >= started + duration_s:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await slots.acquire()  # bounded: a slow hub slows the producers down
                task = tasks.create_task(self._one(n % 2))
                task.add_done_callback(lambda _: slots.release())

    async def sentinels(self) -> list[Write]:
        """One last long-lived snapshot per world: once each is handled, so is all before it."""
        closing = [self._fresh("sentinel", f"w{n:02d}", n % 2) for n in range(self.worlds)]
        prepared = await asyncio.gather(*closing)
        await asyncio.gather(*(self._send(write, snapshot) for write, snapshot in prepared))
        return [write for write, _ in prepared]

    async def _one(self, replica: int) -> None:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind == "duplicate" and self._pool:
            write, prepared = self._duplicate()
        elif kind == "conflict" and self._pool:
            write, prepared = await self._conflict(replica)
        else:
            kind = "new" if kind in ("duplicate", "conflict") else kind
            write, prepared = await self._fresh(kind, f"w{self.rng.randrange(self.worlds):02d}", replica)
        await self._send(write, prepared)
        if write.acknowledged and kind not in ("duplicate", "conflict"):
            self._pool.append((write, prepared))

    async def _fresh(self, kind: str, world: str, replica: int) -> tuple[Write, PreparedSnapshot]:
        prefix = {"doomed": "doomed-", "sentinel": "sentinel-"}.get(kind, "v")
        version = f"{prefix}{next(self._versions):06d}"
        ttl_s = self.rng.choice((1, 2)) if kind == "expiring" else 3600
        doc = snapshot_doc(self.rng, version, large=kind in ("large", "byref"), ttl_s=ttl_s)
        stage = "paper" if kind == "sentinel" else self.rng.choice(STAGES)
        return await self._prepare(kind, world, doc, stage, replica, offload=kind == "byref")

    def _duplicate(self) -> tuple[Write, PreparedSnapshot]:
        original, prepared = self.rng.choice(self._pool)
        write = Write(
            "duplicate",
            original.world,
            original.version,
            original.stage,
            original.actor,
            prepared.hash,
            original.blobs,
            1 - original.replica,  # the same bytes to the other serve process
        )
        return write, prepared

    async def _conflict(self, replica: int) -> tuple[Write, PreparedSnapshot]:
        """Same world and version as an acknowledged write, another body: large, so that the
        producer (half of the time) or the hub puts blobs before the 409."""
        original, _ = self.rng.choice(self._pool)
        doc = snapshot_doc(self.rng, original.version, large=True, ttl_s=3600)
        offload = self.rng.random() < 0.5
        return await self._prepare("conflict", original.world, doc, original.stage, replica, offload=offload)

    async def _prepare(
        self, kind: str, world: str, doc: dict[str, Any], stage: str, replica: int, *, offload: bool
    ) -> tuple[Write, PreparedSnapshot]:
        client = self._offloading if offload and self._offloading is not None else self._plain[0]
        actor = "risk-engine" if offload else "gateway"
        prepared = await client.prepare(world, doc, actor=actor, stage=stage)
        blobs = hub_offloaded_addresses(prepared.body)
        blobs.update(ref_address(ref) for ref in prepared.offloaded.values())
        write = Write(kind, world, prepared.version, stage, actor, prepared.hash, frozenset(blobs), replica)
        return write, prepared

    async def _send(self, write: Write, prepared: PreparedSnapshot) -> None:
        """POST, failing over between the serve processes while neither answers."""
        self.writes.append(write)
        write.started = time.time()
        for attempt in range(FAILOVERS):
            write.sends += 1
            try:
                receipt = await self._plain[(write.replica + attempt) % len(self._plain)].send(prepared)
            except VersionConflict:
                write.status = 409
            except RequestRejected as exc:
                write.error = f"{exc.code}: {exc.message}"[:300]
            except (HubUnavailable, UnexpectedAnswer) as exc:
                write.error = str(exc)[:300]
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            else:
                write.status, write.hash = receipt.status, receipt.hash
            write.answered = time.time()
            return
