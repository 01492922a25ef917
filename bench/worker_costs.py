"""Where a worker's time per record goes, measured in-process on one record of the benchmark's
topic: decoding the CloudEvent and running the risk workers. Explains the worker/raw ratio: the
raw loop does nothing per record, the worker must at least parse every 14 KB event."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence

from riskhub.bus import ReceivedRecord
from riskhub.bus.codec import decode_record
from riskhub.contract import OFFLOADABLE_PARTS
from riskhub.risk.workers import SnapshotView, Worker

REPEATS = 200


def _median_us(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e6


async def per_record_costs(record: ReceivedRecord, workers: Sequence[Worker]) -> tuple[float, float]:
    """Median microseconds to decode ``record`` and to run ``workers`` on its (inline) data."""
    decode, run = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        event = decode_record(record.value, record.headers, record.key)
        decoded = time.perf_counter()
        data = event.data
        view = SnapshotView(stored=data, parts={p: data[p] for p in OFFLOADABLE_PARTS if p in data})
        for worker in workers:
            await worker.run(view)
        decode.append(decoded - started)
        run.append(time.perf_counter() - decoded)
        await asyncio.sleep(0)
    return _median_us(decode), _median_us(run)
