"""Low-rate POSTs on a fixed schedule (one every 1/rate s), from the load generator's CPU, each
answer kept with the wall-clock time its request was sent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from common import WORLDS, BenchError, body_with_version, client_cpu, write_headers


@dataclass(frozen=True)
class Posted:
    """One accepted POST: when it was sent (epoch seconds) and the hub's receipt."""

    posted_at: float
    receipt: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        """``world|version|hash|actor|stage``, the consumer's processed key for this snapshot."""
        r = self.receipt
        return f"{r['world_id']}|{r['version']}|{r['hash']}|{r['actor']}|{r.get('stage') or ''}"


def post_paced(base_url: str, payload: str, count: int, rate: float, tag: str) -> list[Posted]:
    """POST ``count`` new snapshots at ``rate`` per second over the worlds; every answer must be
    201. Runs on the client CPU; the schedule does not drift when a request is slow."""
    headers = {**write_headers(), "Content-Type": "application/json"}
    posted: list[Posted] = []
    with client_cpu(), httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        start = time.monotonic()
        for n in range(count):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            path = f"/risk-hub/worlds/w{n % WORLDS:03d}/snapshots"
            sent_at = time.time()
            response = client.post(path, content=body_with_version(payload, f"{tag}-{n:06d}"))
            if response.status_code != 201:
                raise BenchError(f"paced POST {n}: {response.status_code} {response.text[:300]}")
            posted.append(Posted(sent_at, response.json()))
    return posted
